package learn

import (
	"sync"
	"testing"

	"github.com/daitn/daitn/dataset"
)

// Tests may read files through package dataset; package learn itself never does.
var (
	mnistOnce             sync.Once
	mnistTrain, mnistTest *dataset.Set
	mnistErr              error
)

func mnist(t testing.TB) (train, test *dataset.Set) {
	t.Helper()
	mnistOnce.Do(func() {
		dir, err := dataset.MNISTDir()
		if err != nil {
			mnistErr = err
			return
		}
		mnistTrain, mnistTest, mnistErr = dataset.LoadMNIST(dir)
	})
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	return mnistTrain, mnistTest
}
