package learn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// TrainConfig sets local training: Epochs passes over the data in minibatches
// of Batch samples (0 or ≥ the data size means one full batch, the paper's
// B = ∞), plain SGD with learning rate LR, shuffled per epoch from Seed.
type TrainConfig struct {
	Epochs int
	Batch  int
	LR     float32
	Seed   uint64
}

// TrainResult reports what Train did. Loss is the mean cross-entropy of the
// minibatches of the last epoch, measured before each step.
type TrainResult struct {
	Loss    float64
	Samples int // sample-gradient evaluations, Epochs × data size
	Steps   int // SGD updates
}

// ErrDiverged is returned when the training loss becomes NaN or infinite
// (learning rate too high); the model is left as it was before Train.
var ErrDiverged = errors.New("training diverged")

func (c TrainConfig) check() error {
	if c.Epochs < 1 || c.Epochs > 10000 {
		return fmt.Errorf("epochs %d: must be 1..10000", c.Epochs)
	}
	if c.Batch < 0 {
		return fmt.Errorf("batch %d: must be 0 (whole data) or positive", c.Batch)
	}
	if !(c.LR > 0) || math.IsInf(float64(c.LR), 0) || c.LR > 100 {
		return fmt.Errorf("learning rate %v: must be in (0, 100]", c.LR)
	}
	return nil
}

// Train runs minibatch SGD on m in place and is deterministic: the same
// model, data and config give bit-identical parameters. It returns ctx's
// error if ctx is cancelled (checked between minibatches); on any error m is
// unchanged.
func Train(ctx context.Context, m *Model, d Data, cfg TrainConfig) (TrainResult, error) {
	if err := m.check(); err != nil {
		return TrainResult{}, fmt.Errorf("train: %w", err)
	}
	if err := cfg.check(); err != nil {
		return TrainResult{}, fmt.Errorf("train: %w", err)
	}
	if err := d.check(m.Arch); err != nil {
		return TrainResult{}, fmt.Errorf("train: %w", err)
	}
	n := d.Len()
	if n == 0 {
		return TrainResult{}, fmt.Errorf("train: no samples")
	}
	batch := cfg.Batch
	if batch == 0 || batch > n {
		batch = n
	}
	// Full-batch steps on a big set would need a workspace per sample; chunk
	// them and accumulate instead.
	chunk := min(batch, 256)
	params := append([]float32(nil), m.Params...)
	var grad []float32
	if chunk < batch {
		grad = make([]float32, len(params))
	}
	w := newWork(m.Arch, chunk)
	r := rand.New(rand.NewPCG(cfg.Seed, 0x7367_64)) // "sgd"
	perm := make([]int, n)
	res := TrainResult{}
	for e := 0; e < cfg.Epochs; e++ {
		for i := range perm {
			perm[i] = i
		}
		r.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		var epochLoss float64
		for start := 0; start < n; start += batch {
			if err := ctx.Err(); err != nil {
				return TrainResult{}, fmt.Errorf("train: %w", err)
			}
			idx := perm[start:min(start+batch, n)]
			scale := -cfg.LR / float32(len(idx))
			if grad == nil {
				w.load(d, idx)
				w.forward(params, len(idx))
				epochLoss += w.lossAndDelta(len(idx))
				w.backward(params, params, scale, len(idx))
			} else {
				clear(grad)
				for c := 0; c < len(idx); c += chunk {
					part := idx[c:min(c+chunk, len(idx))]
					w.load(d, part)
					w.forward(params, len(part))
					epochLoss += w.lossAndDelta(len(part))
					w.backward(params, grad, scale, len(part))
				}
				axpy(1, grad, params)
			}
			res.Steps++
			res.Samples += len(idx)
		}
		res.Loss = epochLoss / float64(n)
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			return TrainResult{}, fmt.Errorf("train: %w: loss %v in epoch %d at learning rate %v; lower it", ErrDiverged, res.Loss, e+1, cfg.LR)
		}
	}
	for i, p := range params {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return TrainResult{}, fmt.Errorf("train: %w: parameter %d is %v at learning rate %v; lower it", ErrDiverged, i, p, cfg.LR)
		}
	}
	copy(m.Params, params)
	return res, nil
}

// Gradient returns the mean cross-entropy over d and its gradient with
// respect to every parameter (same layout as Params). It is FedSGD's update
// and what the tests compare against finite differences.
func Gradient(m *Model, d Data) (loss float64, grad []float32, err error) {
	if err := m.check(); err != nil {
		return 0, nil, fmt.Errorf("gradient: %w", err)
	}
	if err := d.check(m.Arch); err != nil {
		return 0, nil, fmt.Errorf("gradient: %w", err)
	}
	n := d.Len()
	if n == 0 {
		return 0, nil, fmt.Errorf("gradient: no samples")
	}
	chunk := min(n, 256)
	w := newWork(m.Arch, chunk)
	grad = make([]float32, len(m.Params))
	idx := make([]int, chunk)
	for start := 0; start < n; start += chunk {
		nb := min(chunk, n-start)
		for b := 0; b < nb; b++ {
			idx[b] = start + b
		}
		w.load(d, idx[:nb])
		w.forward(m.Params, nb)
		loss += w.lossAndDelta(nb)
		w.backward(m.Params, grad, 1/float32(n), nb)
	}
	return loss / float64(n), grad, nil
}
