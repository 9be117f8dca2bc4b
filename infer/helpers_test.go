package infer

import (
	"context"
	"sync"
	"testing"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/learn"
)

// Fixtures shared by the package's internal and external tests: a 2NN
// trained here on the first few thousand real MNIST training digits, and
// real MNIST test digits it has never seen.
var fixture struct {
	once  sync.Once
	err   error
	model []byte // learn.Marshal of the trained 2NN
	test  *dataset.Set
	acc   float64 // the model's accuracy on test
}

// TrainSamples is how many MNIST training digits the fixture model sees.
const TrainSamples = 3000

// TestDigits is how many MNIST test digits the fixture holds.
const TestDigits = 200

func loadFixture() {
	dir, err := dataset.MNISTDir()
	if err != nil {
		fixture.err = err
		return
	}
	train, err := dataset.ReadSetHead(dir, dataset.TrainPrefix, TrainSamples)
	if err != nil {
		fixture.err = err
		return
	}
	test, err := dataset.ReadSetHead(dir, dataset.TestPrefix, TestDigits)
	if err != nil {
		fixture.err = err
		return
	}
	m, err := learn.New(learn.MNIST2NN, 1)
	if err != nil {
		fixture.err = err
		return
	}
	if _, err := learn.Train(context.Background(), m, learn.Data{X: train.X, Y: train.Y},
		learn.TrainConfig{Epochs: 2, Batch: 10, LR: 0.05, Seed: 1}); err != nil {
		fixture.err = err
		return
	}
	ev, err := learn.Evaluate(m, learn.Data{X: test.X, Y: test.Y})
	if err != nil {
		fixture.err = err
		return
	}
	fixture.model, _ = learn.Marshal(m)
	fixture.test, fixture.acc = test, ev.Accuracy
}

// TrainedModel returns the encoded trained 2NN, the MNIST test digits and
// the model's accuracy on them, training it on first use.
func TrainedModel(t testing.TB) (model []byte, test *dataset.Set, acc float64) {
	t.Helper()
	fixture.once.Do(loadFixture)
	if fixture.err != nil {
		t.Fatalf("fixture: %v", fixture.err)
	}
	return fixture.model, fixture.test, fixture.acc
}

// HoldSlots takes n query slots of s, as n long queries would, until the
// returned function is called: the deterministic way to make a host busy.
func (s *Service) HoldSlots(n int) (release func()) {
	full := int64(s.cfg.concurrent)
	for i := 0; i < n; i++ {
		s.slots <- struct{}{}
		if s.inflight.Add(1) == full {
			s.loadChanged()
		}
	}
	return func() {
		for i := 0; i < n; i++ {
			<-s.slots
			if s.inflight.Add(-1) == full-1 {
				s.loadChanged()
			}
		}
	}
}
