package learn

import "golang.org/x/sys/cpu"

// useAVX selects the AVX2+FMA kernels in kernels_amd64.s, about twice as
// wide as gonum's SSE ones (BenchmarkKernels compares them).
var useAVX = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func axpyAVX(a float32, x, y []float32)

//go:noescape
func dotAVX(x, y []float32) float32
