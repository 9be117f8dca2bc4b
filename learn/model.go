package learn

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Model is an architecture and its parameters.
//
// Params is laid out layer by layer; layer l (1-based, from Sizes[l-1] = in
// units to Sizes[l] = out units) is its weight matrix, in×out row-major
// (row i holds the weights leaving input unit i), followed by its out biases.
// Rows of the weight matrix are what the training loop streams through, and
// the layout is fixed so that a change to one weight changes four bytes at a
// fixed offset of the serialised form.
type Model struct {
	Arch   Arch
	Params []float32
}

// New returns a model of the registered architecture arch with weights drawn
// deterministically from seed: He-uniform weights (±sqrt(6/in)), zero biases.
// The same name and seed give the same bytes on every machine.
func New(arch string, seed uint64) (*Model, error) {
	a, err := LookupArch(arch)
	if err != nil {
		return nil, fmt.Errorf("new model: %w", err)
	}
	m := &Model{Arch: a, Params: make([]float32, a.NumParams())}
	r := rand.New(rand.NewPCG(seed, 0x6c6561726e)) // "learn"
	off := 0
	for l := 1; l < len(a.Sizes); l++ {
		in, out := a.Sizes[l-1], a.Sizes[l]
		limit := math.Sqrt(6 / float64(in))
		for i := 0; i < in*out; i++ {
			m.Params[off+i] = float32((2*r.Float64() - 1) * limit)
		}
		off += in*out + out
	}
	return m, nil
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	a := m.Arch
	a.Sizes = append([]int(nil), a.Sizes...)
	return &Model{Arch: a, Params: append([]float32(nil), m.Params...)}
}

// NumParams is len(m.Params) for a well-formed model.
func (m *Model) NumParams() int { return m.Arch.NumParams() }

func (m *Model) check() error {
	if m == nil {
		return fmt.Errorf("no model")
	}
	if err := m.Arch.validate(); err != nil {
		return err
	}
	if len(m.Params) != m.Arch.NumParams() {
		return fmt.Errorf("model %s has %d parameters, its architecture needs %d", m.Arch, len(m.Params), m.Arch.NumParams())
	}
	return nil
}

// layer gives the weight and bias slices of layer l (1-based) of params.
func layer(a Arch, params []float32, l int) (w, b []float32) {
	off := 0
	for k := 1; k < l; k++ {
		off += a.Sizes[k-1]*a.Sizes[k] + a.Sizes[k]
	}
	in, out := a.Sizes[l-1], a.Sizes[l]
	w = params[off : off+in*out : off+in*out]
	b = params[off+in*out : off+in*out+out : off+in*out+out]
	return w, b
}

// Data is a labelled sample set as package learn sees it: no files, just
// values. X holds len(Y) samples row-major, Arch.Inputs() features each;
// Y holds class indices below Arch.Classes(). A dataset.Set converts as
// learn.Data{X: set.X, Y: set.Y}.
type Data struct {
	X []float32
	Y []uint8
}

// Len is the number of samples.
func (d Data) Len() int { return len(d.Y) }

func (d Data) check(a Arch) error {
	if len(d.X) != len(d.Y)*a.Inputs() {
		return fmt.Errorf("data has %d labels and %d features; %s needs %d features per sample (%d in all)", len(d.Y), len(d.X), a, a.Inputs(), len(d.Y)*a.Inputs())
	}
	for i, y := range d.Y {
		if int(y) >= a.Classes() {
			return fmt.Errorf("label of sample %d is %d; %s has classes 0..%d", i, y, a, a.Classes()-1)
		}
	}
	return nil
}

// work holds the buffers of one forward/backward pass over a minibatch of up
// to cap samples, allocated once per Train or Evaluate call so the inner loop
// allocates nothing.
type work struct {
	a     Arch
	cap   int
	in    [][]float32   // the current minibatch's input rows (slices of Data.X)
	act   [][][]float32 // act[l][b]: post-activation of layer l, sample b (l ≥ 1)
	delta [][][]float32 // delta[l][b]: dLoss/d(pre-activation) of layer l
	y     []uint8
}

func newWork(a Arch, batch int) *work {
	L := len(a.Sizes) - 1
	w := &work{a: a, cap: batch, in: make([][]float32, batch), y: make([]uint8, batch)}
	w.act = make([][][]float32, L+1)
	w.delta = make([][][]float32, L+1)
	for l := 1; l <= L; l++ {
		n := a.Sizes[l]
		ab := make([]float32, batch*n)
		db := make([]float32, batch*n)
		w.act[l] = make([][]float32, batch)
		w.delta[l] = make([][]float32, batch)
		for b := 0; b < batch; b++ {
			w.act[l][b] = ab[b*n : (b+1)*n : (b+1)*n]
			w.delta[l][b] = db[b*n : (b+1)*n : (b+1)*n]
		}
	}
	return w
}

// load points the workspace at samples idx of d (no copy of features).
func (w *work) load(d Data, idx []int) {
	dim := w.a.Inputs()
	for b, i := range idx {
		w.in[b] = d.X[i*dim : (i+1)*dim : (i+1)*dim]
		w.y[b] = d.Y[i]
	}
}

// prev returns the inputs of layer l for the first nb samples.
func (w *work) prev(l, nb int) [][]float32 {
	if l == 1 {
		return w.in[:nb]
	}
	return w.act[l-1][:nb]
}

// forward computes every layer's activations for the first nb loaded
// samples; the top layer holds logits. Looping over input units outermost
// streams each weight row once per minibatch, and skipping zero inputs
// (most MNIST pixels, about half the ReLU outputs) skips whole rows.
func (w *work) forward(params []float32, nb int) {
	L := len(w.a.Sizes) - 1
	for l := 1; l <= L; l++ {
		W, bias := layer(w.a, params, l)
		n := w.a.Sizes[l]
		prev := w.prev(l, nb)
		out := w.act[l][:nb]
		for b := range out {
			copy(out[b], bias)
		}
		for i := 0; i < w.a.Sizes[l-1]; i++ {
			row := W[i*n : (i+1)*n : (i+1)*n]
			for b, p := range prev {
				if v := p[i]; v != 0 {
					axpy(v, row, out[b])
				}
			}
		}
		if l < L {
			for _, o := range out {
				relu(o)
			}
		}
	}
}

// lossAndDelta turns the top layer's logits into softmax probabilities,
// returns the summed cross-entropy of the first nb samples and leaves
// p - onehot(y) in the top delta.
func (w *work) lossAndDelta(nb int) float64 {
	L := len(w.a.Sizes) - 1
	var loss float64
	for b := 0; b < nb; b++ {
		z, d := w.act[L][b], w.delta[L][b]
		mx := z[0]
		for _, v := range z[1:] {
			mx = max(mx, v)
		}
		var sum float64
		for j, v := range z {
			e := math.Exp(float64(v - mx))
			d[j] = float32(e)
			sum += e
		}
		y := w.y[b]
		loss += math.Log(sum) - float64(z[y]-mx)
		inv := float32(1 / sum)
		for j := range d {
			d[j] *= inv
		}
		d[y] -= 1
	}
	return loss
}

// backward propagates the top delta down and adds scale × dLoss/dθ to
// target. With target = params and scale = -lr/B this is the SGD step
// itself, fused into the backward pass: row i's contribution to the lower
// delta is read before row i is updated, so no gradient buffer is needed.
func (w *work) backward(params, target []float32, scale float32, nb int) {
	L := len(w.a.Sizes) - 1
	for l := L; l >= 1; l-- {
		W, _ := layer(w.a, params, l)
		tW, tb := layer(w.a, target, l)
		n := w.a.Sizes[l]
		delta := w.delta[l][:nb]
		prev := w.prev(l, nb)
		for b := range delta {
			axpy(scale, delta[b], tb)
		}
		var dprev [][]float32
		if l > 1 {
			dprev = w.delta[l-1][:nb]
		}
		for i := 0; i < w.a.Sizes[l-1]; i++ {
			row := W[i*n : (i+1)*n : (i+1)*n]
			trow := tW[i*n : (i+1)*n : (i+1)*n]
			if dprev != nil {
				for b, p := range prev {
					if p[i] > 0 { // ReLU passes the gradient only where it was active
						dprev[b][i] = dot(row, delta[b])
					} else {
						dprev[b][i] = 0
					}
				}
			}
			// Only after every sample has read row i may it change (row and
			// trow are the same memory in an SGD step).
			for b, p := range prev {
				if v := p[i]; v != 0 {
					axpy(scale*v, delta[b], trow)
				}
			}
		}
	}
}

func relu(x []float32) {
	for i, v := range x {
		if v < 0 {
			x[i] = 0
		}
	}
}

// Predict returns the most likely class of one sample and the softmax
// probabilities of all classes.
func (m *Model) Predict(x []float32) (class int, probs []float32, err error) {
	if err := m.check(); err != nil {
		return 0, nil, fmt.Errorf("predict: %w", err)
	}
	if len(x) != m.Arch.Inputs() {
		return 0, nil, fmt.Errorf("predict: sample has %d features, %s needs %d", len(x), m.Arch, m.Arch.Inputs())
	}
	w := newWork(m.Arch, 1)
	w.in[0] = x
	w.forward(m.Params, 1)
	w.lossAndDelta(1) // y = 0 is a valid class; delta[0] gets -1 which we undo below
	L := len(m.Arch.Sizes) - 1
	probs = append([]float32(nil), w.delta[L][0]...)
	probs[0] += 1
	for j, p := range probs {
		if p > probs[class] {
			class = j
		}
	}
	return class, probs, nil
}
