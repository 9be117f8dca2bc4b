package learn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestArchRegistry(t *testing.T) {
	a, err := LookupArch(MNIST2NN)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.NumParams(); got != 199210 {
		t.Fatalf("2NN has %d parameters, the paper's has 199,210", got)
	}
	if _, err := LookupArch("resnet-9000"); !errors.Is(err, ErrUnknownArch) || !strings.Contains(err.Error(), `"resnet-9000"`) || !strings.Contains(err.Error(), MNIST2NN) {
		t.Fatalf("unknown arch error %v should name it and list the known ones", err)
	}
	for _, tc := range []struct {
		a    Arch
		want string
	}{
		{Arch{Name: "", Sizes: []int{2, 2}}, "name"},
		{Arch{Name: "x", Sizes: []int{2}}, "need 2.."},
		{Arch{Name: "x", Sizes: []int{2, 0, 2}}, "layer 1 has 0 units"},
		{Arch{Name: "x", Sizes: []int{2, 1}}, "1 classes"},
		{Arch{Name: "x", Sizes: []int{60000, 60000, 2}}, "parameters"},
		{Arch{Name: MNIST2NN, Sizes: []int{784, 10}}, "already registered"},
	} {
		if err := RegisterArch(tc.a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RegisterArch(%v): got %v, want error containing %q", tc.a, err, tc.want)
		}
	}
	if err := RegisterArch(Arch{Name: MNIST2NN, Sizes: []int{784, 200, 200, 10}}); err != nil {
		t.Fatalf("re-registering the same shape: %v", err)
	}
}

func TestNewDeterministic(t *testing.T) {
	a, _ := New(MNIST2NN, 7)
	b, _ := New(MNIST2NN, 7)
	c, _ := New(MNIST2NN, 8)
	if !equal(a.Params, b.Params) {
		t.Fatal("same seed, different weights")
	}
	if equal(a.Params, c.Params) {
		t.Fatal("different seeds, same weights")
	}
	if _, err := New("nope", 1); !errors.Is(err, ErrUnknownArch) {
		t.Fatalf("New(nope): %v", err)
	}
}

// tiny is a small net whose gradient can be checked exhaustively.
var tiny = Arch{Name: "test-tiny", Sizes: []int{6, 5, 4, 3}}

func randomData(r *rand.Rand, a Arch, n int) Data {
	d := Data{X: make([]float32, n*a.Inputs()), Y: make([]uint8, n)}
	for i := range d.X {
		if r.IntN(4) > 0 { // some exact zeros, like MNIST pixels
			d.X[i] = float32(r.NormFloat64())
		}
	}
	for i := range d.Y {
		d.Y[i] = uint8(r.IntN(a.Classes()))
	}
	return d
}

// lossAt evaluates the mean loss in float64 for finite differences.
func lossAt(t *testing.T, m *Model, d Data) float64 {
	ev, err := Evaluate(m, d)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Loss
}

// refLoss is the mean loss computed in float64 by the reference.
func refLoss(m *Model, d Data) float64 {
	l, _ := refGradient(m, d)
	return l
}

// TestGradientMatchesFiniteDifferences checks every entry of the tiny net's
// gradient against central differences of the float64 reference loss.
func TestGradientMatchesFiniteDifferences(t *testing.T) {
	if err := RegisterArch(tiny); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	m, _ := New(tiny.Name, 3)
	for i := range m.Params { // non-zero biases too
		m.Params[i] += float32(r.NormFloat64() * 0.05)
	}
	d := randomData(r, tiny, 7)
	loss, grad, err := Gradient(m, d)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(loss-lossAt(t, m, d)) > 1e-5 {
		t.Fatalf("Gradient's loss %v differs from Evaluate's %v", loss, lossAt(t, m, d))
	}
	const h = 1e-3
	bad := 0
	for i := range m.Params {
		orig := m.Params[i]
		m.Params[i] = orig + h
		hp := float64(m.Params[i] - orig) // the step float32 can represent
		up := refLoss(m, d)
		m.Params[i] = orig - h
		hm := float64(orig - m.Params[i])
		down := refLoss(m, d)
		m.Params[i] = orig
		num := (up - down) / (hp + hm)
		if diff := math.Abs(num - float64(grad[i])); diff > 1e-3+0.01*math.Abs(num) {
			t.Logf("param %d: analytic %v, numeric %v", i, grad[i], num)
			bad++
		}
	}
	// A ReLU kink within ±h of a pre-activation can spoil a difference.
	if bad > 1 {
		t.Fatalf("%d of %d gradient entries disagree with finite differences", bad, len(m.Params))
	}
}

func TestGradient2NNSubset(t *testing.T) {
	train, _ := mnist(t)
	d := Data{X: train.X[:4*784], Y: train.Y[:4]}
	m, _ := New(MNIST2NN, 5)
	_, grad, err := Gradient(m, d)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	// Check the largest-gradient entries of each layer plus random ones.
	idx := []int{}
	for l := 1; l <= 3; l++ {
		w, b := layer(m.Arch, grad, l)
		off := offsetOf(grad, w)
		best := 0
		for i := range w {
			if math.Abs(float64(w[i])) > math.Abs(float64(w[best])) {
				best = i
			}
		}
		idx = append(idx, off+best, offsetOf(grad, b)+r.IntN(len(b)))
	}
	for k := 0; k < 4; k++ {
		idx = append(idx, r.IntN(len(grad)))
	}
	// The float64 reference is too slow for the 2NN under -race; central
	// differences of the fast float32 loss with a larger step do here.
	const h = 1e-2
	bad := 0
	for _, i := range idx {
		orig := m.Params[i]
		m.Params[i] = orig + h
		hp := float64(m.Params[i] - orig)
		up := lossAt(t, m, d)
		m.Params[i] = orig - h
		hm := float64(orig - m.Params[i])
		down := lossAt(t, m, d)
		m.Params[i] = orig
		num := (up - down) / (hp + hm)
		if diff := math.Abs(num - float64(grad[i])); diff > 2e-3+0.05*math.Abs(num) {
			t.Logf("2NN param %d: analytic %v, numeric %v", i, grad[i], num)
			bad++
		}
	}
	if bad > 1 { // one ReLU kink within ±h is possible
		t.Fatalf("%d of %d checked 2NN gradient entries disagree with finite differences", bad, len(idx))
	}
}

func offsetOf(all, part []float32) int {
	for i := range all {
		if &all[i] == &part[0] {
			return i
		}
	}
	panic("not a sub-slice")
}

// SGD with batch B must equal B-sample gradient steps taken one at a time:
// a check of the fused backward/update against Gradient.
func TestTrainStepIsGradientStep(t *testing.T) {
	if err := RegisterArch(tiny); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	d := randomData(r, tiny, 5)
	m, _ := New(tiny.Name, 1)
	want := m.Clone()
	_, g, _ := Gradient(want, d)
	axpy(-0.1, g, want.Params)
	for _, batch := range []int{0, 5, 500} { // all mean "one full batch"
		got := m.Clone()
		res, err := Train(context.Background(), got, d, TrainConfig{Epochs: 1, Batch: batch, LR: 0.1, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Steps != 1 || res.Samples != 5 {
			t.Fatalf("batch %d: %+v", batch, res)
		}
		for i := range got.Params {
			if math.Abs(float64(got.Params[i]-want.Params[i])) > 1e-6 {
				t.Fatalf("batch %d: param %d is %v after Train, %v after a gradient step", batch, i, got.Params[i], want.Params[i])
			}
		}
	}
}

func TestFullBatchChunked(t *testing.T) {
	// A full batch larger than the internal chunk of 256 goes through the
	// gradient-accumulating path; it must equal one Gradient step.
	train, _ := mnist(t)
	d := Data{X: train.X[:600*784], Y: train.Y[:600]}
	m, _ := New(LogReg, 2)
	want := m.Clone()
	_, g, _ := Gradient(want, d)
	axpy(-0.5, g, want.Params)
	if _, err := Train(context.Background(), m, d, TrainConfig{Epochs: 1, LR: 0.5}); err != nil {
		t.Fatal(err)
	}
	for i := range m.Params {
		if math.Abs(float64(m.Params[i]-want.Params[i])) > 1e-5 {
			t.Fatalf("param %d: %v vs %v", i, m.Params[i], want.Params[i])
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	train, _ := mnist(t)
	d := Data{X: train.X[:300*784], Y: train.Y[:300]}
	cfg := TrainConfig{Epochs: 2, Batch: 10, LR: 0.05, Seed: 11}
	a, _ := New(MNIST2NN, 1)
	b := a.Clone()
	ra, _ := Train(context.Background(), a, d, cfg)
	rb, _ := Train(context.Background(), b, d, cfg)
	if !equal(a.Params, b.Params) || ra != rb {
		t.Fatal("same seed, different training result")
	}
	c, _ := New(MNIST2NN, 1)
	cfg.Seed = 12
	Train(context.Background(), c, d, cfg)
	if equal(a.Params, c.Params) {
		t.Fatal("a different shuffle seed changed nothing")
	}
}

func TestTrainErrors(t *testing.T) {
	m, _ := New(LogReg, 1)
	before := m.Clone()
	good := Data{X: make([]float32, 2*784), Y: []uint8{1, 2}}
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		d    Data
		cfg  TrainConfig
		want string
	}{
		{"epochs", ctx, good, TrainConfig{Epochs: 0, LR: 0.1}, "epochs 0"},
		{"batch", ctx, good, TrainConfig{Epochs: 1, Batch: -1, LR: 0.1}, "batch -1"},
		{"lr", ctx, good, TrainConfig{Epochs: 1, LR: 0}, "learning rate 0"},
		{"lr nan", ctx, good, TrainConfig{Epochs: 1, LR: float32(math.NaN())}, "learning rate NaN"},
		{"features", ctx, Data{X: make([]float32, 783), Y: []uint8{1}}, TrainConfig{Epochs: 1, LR: 0.1}, "783 features"},
		{"label", ctx, Data{X: make([]float32, 784), Y: []uint8{10}}, TrainConfig{Epochs: 1, LR: 0.1}, "label of sample 0 is 10"},
		{"empty", ctx, Data{}, TrainConfig{Epochs: 1, LR: 0.1}, "no samples"},
		{"cancelled", cancelled, good, TrainConfig{Epochs: 1, LR: 0.1}, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Train(tc.ctx, m, tc.d, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if !equal(m.Params, before.Params) {
				t.Fatal("a failed Train changed the model")
			}
		})
	}
}

func TestTrainDivergesCleanly(t *testing.T) {
	train, _ := mnist(t)
	d := Data{X: train.X[:200*784], Y: train.Y[:200]}
	m, _ := New(MNIST2NN, 1)
	before := m.Clone()
	_, err := Train(context.Background(), m, d, TrainConfig{Epochs: 3, Batch: 10, LR: 99, Seed: 1})
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("lr=99: got %v, want ErrDiverged", err)
	}
	if !equal(m.Params, before.Params) {
		t.Fatal("a diverged Train changed the model")
	}
}

// TestTrainMNISTAccuracy trains the 2NN on real MNIST and checks real test
// accuracy. The full run (60k samples, 1 epoch, >0.90) is ~4 s normally; under
// the race detector math is ~10× slower, so -short uses a 10k subset with
// a slightly lower bar.
func TestTrainMNISTAccuracy(t *testing.T) {
	train, test := mnist(t)
	n, want := train.Len(), 0.95
	if testing.Short() || raceEnabled {
		n, want = 10000, 0.90
	}
	m, _ := New(MNIST2NN, 1)
	res, err := Train(context.Background(), m, Data{X: train.X[:n*784], Y: train.Y[:n]}, TrainConfig{Epochs: 1, Batch: 10, LR: 0.05, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Evaluate(m, Data{X: test.X, Y: test.Y})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1 epoch over %d samples: train loss %.4f, test accuracy %.4f, test loss %.4f", n, res.Loss, ev.Accuracy, ev.Loss)
	if ev.Accuracy < want || ev.Samples != 10000 {
		t.Fatalf("test accuracy %.4f after one epoch on %d samples, want > %.2f", ev.Accuracy, n, want)
	}
}

func TestEvaluateAndPredict(t *testing.T) {
	_, test := mnist(t)
	d := Data{X: test.X[:500*784], Y: test.Y[:500]}
	m, _ := New(MNIST2NN, 3)
	ev, err := Evaluate(m, d)
	if err != nil {
		t.Fatal(err)
	}
	// An untrained 10-class model: about chance accuracy, loss near ln 10.
	if ev.Accuracy > 0.3 || ev.Loss < 1 || ev.Loss > 5 || ev.Samples != 500 {
		t.Fatalf("untrained model: %+v", ev)
	}
	correct := 0
	for i := 0; i < 500; i++ {
		c, p, err := m.Predict(d.X[i*784 : (i+1)*784])
		if err != nil {
			t.Fatal(err)
		}
		var sum float32
		for _, v := range p {
			sum += v
		}
		if math.Abs(float64(sum)-1) > 1e-4 {
			t.Fatalf("probabilities sum to %v", sum)
		}
		if c == int(d.Y[i]) {
			correct++
		}
	}
	if got := float64(correct) / 500; got != ev.Accuracy {
		t.Fatalf("Predict accuracy %v, Evaluate %v", got, ev.Accuracy)
	}
	if _, _, err := m.Predict(make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "3 features") {
		t.Fatalf("Predict short sample: %v", err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestGradientMatchesReference(t *testing.T) {
	if err := RegisterArch(tiny); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	m, _ := New(tiny.Name, 3)
	d := randomData(r, tiny, 7)
	loss, grad, _ := Gradient(m, d)
	rl, rg := refGradient(m, d)
	if math.Abs(loss-rl) > 1e-5 {
		t.Errorf("loss %v, reference %v", loss, rl)
	}
	for i := range grad {
		if math.Abs(float64(grad[i])-rg[i]) > 1e-5 {
			t.Errorf("param %d: %v, reference %v", i, grad[i], rg[i])
		}
	}
}

// TestFedAvgRounds runs a few FedAvg rounds on real IID shards, the way the
// train service composes Train, CheckUpdate and Average, and checks the
// global model's real test accuracy.
func TestFedAvgRounds(t *testing.T) {
	train, test := mnist(t)
	const clients, per = 10, 600
	global, _ := New(MNIST2NN, 1)
	rounds, want := 4, 0.88
	if testing.Short() || raceEnabled {
		rounds, want = 2, 0.84
	}
	for r := 0; r < rounds; r++ {
		var ups []Update
		for k := 0; k < clients; k++ {
			// Client k owns samples [k*per, (k+1)*per) of the first 6000.
			d := Data{X: train.X[k*per*784 : (k+1)*per*784], Y: train.Y[k*per : (k+1)*per]}
			local := global.Clone()
			if _, err := Train(context.Background(), local, d, TrainConfig{Epochs: 1, Batch: 10, LR: 0.05, Seed: uint64(r*100 + k)}); err != nil {
				t.Fatal(err)
			}
			u := Update{From: "client", Params: local.Params, Weight: per}
			if err := CheckUpdate(global.NumParams(), u); err != nil {
				t.Fatal(err)
			}
			ups = append(ups, u)
		}
		p, err := Average(global.NumParams(), ups)
		if err != nil {
			t.Fatal(err)
		}
		global.Params = p
	}
	ev, err := Evaluate(global, Data{X: test.X, Y: test.Y})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d FedAvg rounds of 10 clients × 600: test accuracy %.4f", rounds, ev.Accuracy)
	if ev.Accuracy < want {
		t.Fatalf("test accuracy %.4f after %d rounds, want > %.2f", ev.Accuracy, rounds, want)
	}
}
