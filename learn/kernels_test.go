package learn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestKernels checks the selected axpy and dot against plain float64 loops
// for every length up to 100 and unaligned starts, and that axpy writes
// nothing past len(x).
func TestKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	buf := func(n int) []float32 {
		b := make([]float32, n)
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		return b
	}
	for n := 0; n <= 100; n++ {
		for off := 0; off < 3; off++ {
			x := buf(n + off + 1)[off : off+n]
			yAll := buf(n + off + 1)
			y := yAll[off : off+n]
			guard := yAll[off+n]
			a := float32(r.NormFloat64())
			want := make([]float64, n)
			var wantDot float64
			for i := range y {
				want[i] = float64(y[i]) + float64(a)*float64(x[i])
				wantDot += float64(x[i]) * float64(y[i])
			}
			if got := float64(dot(x, y)); math.Abs(got-wantDot) > 1e-4*(1+math.Abs(wantDot)) {
				t.Fatalf("n=%d off=%d: dot %v, want %v", n, off, got, wantDot)
			}
			axpy(a, x, y)
			for i := range y {
				if math.Abs(float64(y[i])-want[i]) > 1e-5*(1+math.Abs(want[i])) {
					t.Fatalf("n=%d off=%d: axpy[%d] %v, want %v", n, off, i, y[i], want[i])
				}
			}
			if yAll[off+n] != guard {
				t.Fatalf("n=%d: axpy wrote past the end", n)
			}
		}
	}
	t.Logf("AVX2+FMA kernels: %v", useAVX)
}
