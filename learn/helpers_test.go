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
		if testing.Short() || raceEnabled {
			// Decoding all 60,000 images under -race costs tens of seconds;
			// the short tests use at most the first 10,000.
			if mnistTrain, mnistErr = dataset.ReadSetHead(dir, dataset.TrainPrefix, 10000); mnistErr == nil {
				mnistTest, mnistErr = dataset.ReadSet(dir, dataset.TestPrefix, 0)
			}
			return
		}
		mnistTrain, mnistTest, mnistErr = dataset.LoadMNIST(dir)
	})
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	return mnistTrain, mnistTest
}
