package learn

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

func BenchmarkKernels(b *testing.B) {
	x := make([]float32, 200)
	y := make([]float32, 200)
	for i := range x {
		x[i] = float32(i) / 200
	}
	b.Run("axpy/selected", func(b *testing.B) {
		for b.Loop() {
			axpy(0.5, x, y)
		}
	})
	b.Run("axpy/gonum", func(b *testing.B) {
		for b.Loop() {
			blas32.Saxpy(len(x), 0.5, x, 1, y, 1)
		}
	})
	b.Run("axpy/go", func(b *testing.B) {
		for b.Loop() {
			axpyGo(0.5, x, y)
		}
	})
	var s float32
	b.Run("dot/selected", func(b *testing.B) {
		for b.Loop() {
			s += dot(x, y)
		}
	})
	b.Run("dot/gonum", func(b *testing.B) {
		for b.Loop() {
			s += blas32.Sdot(len(x), x, 1, y, 1)
		}
	})
	b.Run("dot/go", func(b *testing.B) {
		for b.Loop() {
			s += dotGo(x, y)
		}
	})
}

// BenchmarkTrainEpoch600 is one client's local epoch in the FedAvg paper's
// setting: 600 MNIST samples, 2NN, with the selected kernels and, for
// comparison in the same run, with gonum's.
func BenchmarkTrainEpoch600(b *testing.B) {
	train, _ := mnist(b)
	d := Data{X: train.X[:600*784], Y: train.Y[:600]}
	avx := useAVX
	defer func() { useAVX = avx }()
	for _, kern := range []string{"selected", "gonum"} {
		for _, batch := range []int{10, 50} {
			b.Run(fmt.Sprintf("kernels=%s/B=%d", kern, batch), func(b *testing.B) {
				useAVX = avx && kern == "selected"
				init, _ := New(MNIST2NN, 1)
				m := init.Clone()
				b.ReportAllocs()
				defer lockThread()()
				cpu0 := threadCPU()
				for b.Loop() {
					copy(m.Params, init.Params) // always the same work: a fresh model
					if _, err := Train(context.Background(), m, d, TrainConfig{Epochs: 1, Batch: batch, LR: 0.05, Seed: 1}); err != nil {
						b.Fatal(err)
					}
				}
				cpu := float64(threadCPU()-cpu0) / float64(b.N)
				b.ReportMetric(cpu, "cpu-ns/op")
				b.ReportMetric(cpu/600, "cpu-ns/sample")
			})
		}
	}
}

// BenchmarkTrainEpoch60k is a full pass over the MNIST training set, B=10.
// Skipped in -short mode.
func BenchmarkTrainEpoch60k(b *testing.B) {
	if testing.Short() {
		b.Skip("long: run without -short")
	}
	train, _ := mnist(b)
	d := Data{X: train.X, Y: train.Y}
	init, _ := New(MNIST2NN, 1)
	m := init.Clone()
	defer lockThread()()
	cpu0 := threadCPU()
	for b.Loop() {
		copy(m.Params, init.Params)
		if _, err := Train(context.Background(), m, d, TrainConfig{Epochs: 1, Batch: 10, LR: 0.05, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkEvaluate10k(b *testing.B) {
	_, test := mnist(b)
	d := Data{X: test.X, Y: test.Y}
	m, _ := New(MNIST2NN, 1)
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := Evaluate(m, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkUpdateLocality trains one FedAvg client round (600 real samples,
// E=1, B=10) and reports how much of the serialised update is unchanged from
// the model it started from: parameters, and aligned 1 KiB and 4 KiB blocks
// (what chunk-level deduplication in transfer could skip).
func BenchmarkUpdateLocality(b *testing.B) {
	train, _ := mnist(b)
	d := Data{X: train.X[:600*784], Y: train.Y[:600]}
	global, _ := New(MNIST2NN, 1)
	before, _ := Marshal(global)
	var after []byte
	var m *Model
	for b.Loop() {
		m = global.Clone()
		if _, err := Train(context.Background(), m, d, TrainConfig{Epochs: 1, Batch: 10, LR: 0.05, Seed: 1}); err != nil {
			b.Fatal(err)
		}
		after, _ = Marshal(m)
	}
	same := 0
	for i := range m.Params {
		if m.Params[i] == global.Params[i] {
			same++
		}
	}
	b.ReportMetric(100*float64(same)/float64(len(m.Params)), "%params-unchanged")
	for _, bs := range []int{1024, 4096} {
		same, total := 0, 0
		for i := 0; i < len(after); i += bs {
			j := min(i+bs, len(after))
			total++
			if bytes.Equal(before[i:j], after[i:j]) {
				same++
			}
		}
		b.ReportMetric(100*float64(same)/float64(total), fmt.Sprintf("%%%dB-blocks-unchanged", bs))
	}
}
