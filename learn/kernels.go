package learn

import (
	blasgonum "gonum.org/v1/gonum/blas/gonum"
)

// The two kernels every layer reduces to. On amd64 with AVX2 and FMA they
// are our own assembly (kernels_amd64.s); otherwise gonum's float32 BLAS
// level 1 (SSE assembly on amd64, Go elsewhere). BenchmarkKernels compares
// them with the portable loops below on 200-wide rows.

var blas32 blasgonum.Implementation

// axpy computes y += a*x for len(x) == len(y).
func axpy(a float32, x, y []float32) {
	if useAVX {
		axpyAVX(a, x, y[:len(x)])
		return
	}
	blas32.Saxpy(len(x), a, x, 1, y, 1)
}

// dot returns x·y for len(x) == len(y).
func dot(x, y []float32) float32 {
	if useAVX {
		return dotAVX(x, y[:len(x)])
	}
	return blas32.Sdot(len(x), x, 1, y, 1)
}

func axpyGo(a float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs := x[i : i+4 : i+4]
		ys := y[i : i+4 : i+4]
		ys[0] += a * xs[0]
		ys[1] += a * xs[1]
		ys[2] += a * xs[2]
		ys[3] += a * xs[3]
	}
	for ; i < len(x); i++ {
		y[i] += a * x[i]
	}
}

func dotGo(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs := x[i : i+4 : i+4]
		ys := y[i : i+4 : i+4]
		s0 += xs[0] * ys[0]
		s1 += xs[1] * ys[1]
		s2 += xs[2] * ys[2]
		s3 += xs[3] * ys[3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}
