//go:build !amd64

package learn

var useAVX = false

func axpyAVX(a float32, x, y []float32) { panic("unreachable") }

func dotAVX(x, y []float32) float32 { panic("unreachable") }
