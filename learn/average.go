package learn

import (
	"errors"
	"fmt"
	"math"
)

// Conditions an update can be rejected for; UpdateError wraps one of them.
var (
	ErrNoUpdates = errors.New("no updates to average")
	ErrShape     = errors.New("wrong number of parameters")
	ErrNonFinite = errors.New("non-finite parameter")
	ErrWeight    = errors.New("invalid weight")
)

// Update is one client's contribution to a FedAvg round: its locally trained
// parameters and its weight (normally the number of samples it trained on,
// n_k in the paper). A sender could claim any weight to dominate the
// average, so the aggregator should take it from what it already knows
// (the dataset descriptor's sample count, capped by the plan), not from the
// sender's word.
type Update struct {
	From   string // who sent it, e.g. a peer ID; only used to name it in errors
	Params []float32
	Weight float64
}

// UpdateError names the update Average refused and why. Err wraps ErrShape,
// ErrNonFinite or ErrWeight.
type UpdateError struct {
	Index int
	From  string
	Err   error
}

func (e *UpdateError) Error() string {
	if e.From != "" {
		return fmt.Sprintf("update %d from %s: %v", e.Index, e.From, e.Err)
	}
	return fmt.Sprintf("update %d: %v", e.Index, e.Err)
}

func (e *UpdateError) Unwrap() error { return e.Err }

// CheckUpdate reports whether u can be averaged into a model of size
// parameters: the right length, every parameter finite, a finite positive
// weight. The train service calls it on each update as it arrives so a
// faulty or malicious sender is excluded and the round goes on without it.
func CheckUpdate(size int, u Update) error {
	if len(u.Params) != size {
		return fmt.Errorf("%w: %d, the model has %d", ErrShape, len(u.Params), size)
	}
	if !(u.Weight > 0) || math.IsInf(u.Weight, 0) {
		return fmt.Errorf("%w: %v, must be finite and positive", ErrWeight, u.Weight)
	}
	for i, p := range u.Params {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return fmt.Errorf("%w: parameter %d is %v", ErrNonFinite, i, p)
		}
	}
	return nil
}

// Average returns the weighted mean Σ w_k θ_k / Σ w_k of the updates'
// parameters, accumulated in float64. Every update must pass CheckUpdate for
// a model of size parameters; otherwise Average returns an *UpdateError for
// the first one that fails and no result. With integer weights (sample
// counts) the average of identical updates is bit-identical to each of them.
// Float rounding makes the result depend slightly on the order of updates;
// callers wanting reproducible rounds pass them in a fixed order.
func Average(size int, updates []Update) ([]float32, error) {
	if len(updates) == 0 {
		return nil, fmt.Errorf("average: %w", ErrNoUpdates)
	}
	// Weights are rescaled by the largest one before summing so that huge
	// but finite weights cannot overflow; the coefficients c_k sum to 1 and
	// every partial sum stays within the range of the parameters.
	var maxW float64
	for i, u := range updates {
		if err := CheckUpdate(size, u); err != nil {
			return nil, fmt.Errorf("average: %w", &UpdateError{Index: i, From: u.From, Err: err})
		}
		maxW = max(maxW, u.Weight)
	}
	var total float64
	for _, u := range updates {
		total += u.Weight / maxW
	}
	acc := make([]float64, size)
	for _, u := range updates {
		c := (u.Weight / maxW) / total
		for j, p := range u.Params {
			acc[j] += c * float64(p)
		}
	}
	out := make([]float32, size)
	for j, s := range acc {
		out[j] = float32(s)
	}
	return out, nil
}

// Distance is the Euclidean distance between two parameter vectors of the
// same length (computed in float64), or +Inf if their lengths differ. An
// aggregator can use it to spot an update that is finite but absurdly far
// from the global model it was trained from — e.g. more than a few times the
// median distance of the round — before averaging.
func Distance(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}
