package learn

import (
	"fmt"
	"runtime"
	"sync"
)

// Eval is a model's quality on a labelled set.
type Eval struct {
	Accuracy float64 // fraction of samples whose most likely class is the label
	Loss     float64 // mean cross-entropy
	Samples  int
}

// evalChunk is the minibatch of a forward-only pass; results are summed per
// chunk in chunk order, so the answer does not depend on the worker count.
const evalChunk = 100

// Evaluate measures m on d. Work is split over GOMAXPROCS goroutines, all
// joined before it returns.
func Evaluate(m *Model, d Data) (Eval, error) {
	if err := m.check(); err != nil {
		return Eval{}, fmt.Errorf("evaluate: %w", err)
	}
	if err := d.check(m.Arch); err != nil {
		return Eval{}, fmt.Errorf("evaluate: %w", err)
	}
	n := d.Len()
	if n == 0 {
		return Eval{}, fmt.Errorf("evaluate: no samples")
	}
	chunks := (n + evalChunk - 1) / evalChunk
	losses := make([]float64, chunks)
	correct := make([]int, chunks)
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWork(m.Arch, evalChunk)
			idx := make([]int, evalChunk)
			L := len(m.Arch.Sizes) - 1
			for c := k; c < chunks; c += workers {
				start := c * evalChunk
				nb := min(evalChunk, n-start)
				for b := 0; b < nb; b++ {
					idx[b] = start + b
				}
				w.load(d, idx[:nb])
				w.forward(m.Params, nb)
				for b := 0; b < nb; b++ {
					z := w.act[L][b]
					best := 0
					for j, v := range z {
						if v > z[best] {
							best = j
						}
					}
					if best == int(w.y[b]) {
						correct[c]++
					}
				}
				losses[c] = w.lossAndDelta(nb)
			}
		}()
	}
	wg.Wait()
	var loss float64
	var ok int
	for c := range losses {
		loss += losses[c]
		ok += correct[c]
	}
	return Eval{Accuracy: float64(ok) / float64(n), Loss: loss / float64(n), Samples: n}, nil
}
