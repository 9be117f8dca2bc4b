package learn

import "math"

// refGradient is a slow, obviously-correct float64 backprop used to check
// the fast one.
func refGradient(m *Model, d Data) (float64, []float64) {
	a := m.Arch
	L := len(a.Sizes) - 1
	grad := make([]float64, len(m.Params))
	var loss float64
	for s := 0; s < d.Len(); s++ {
		acts := [][]float64{make([]float64, a.Inputs())}
		for i := range acts[0] {
			acts[0][i] = float64(d.X[s*a.Inputs()+i])
		}
		for l := 1; l <= L; l++ {
			W, b := layer(a, m.Params, l)
			in, out := a.Sizes[l-1], a.Sizes[l]
			z := make([]float64, out)
			for j := 0; j < out; j++ {
				z[j] = float64(b[j])
				for i := 0; i < in; i++ {
					z[j] += acts[l-1][i] * float64(W[i*out+j])
				}
				if l < L && z[j] < 0 {
					z[j] = 0
				}
			}
			acts = append(acts, z)
		}
		z := acts[L]
		mx := z[0]
		for _, v := range z {
			mx = math.Max(mx, v)
		}
		var sum float64
		for _, v := range z {
			sum += math.Exp(v - mx)
		}
		y := int(d.Y[s])
		loss += math.Log(sum) - (z[y] - mx)
		delta := make([]float64, len(z))
		for j, v := range z {
			delta[j] = math.Exp(v-mx) / sum
		}
		delta[y]--
		for l := L; l >= 1; l-- {
			W, _ := layer(a, m.Params, l)
			gW, gb := layer(a, make([]float32, len(m.Params)), l)
			_ = gW
			_ = gb
			in, out := a.Sizes[l-1], a.Sizes[l]
			off := 0
			for k := 1; k < l; k++ {
				off += a.Sizes[k-1]*a.Sizes[k] + a.Sizes[k]
			}
			for i := 0; i < in; i++ {
				for j := 0; j < out; j++ {
					grad[off+i*out+j] += acts[l-1][i] * delta[j] / float64(d.Len())
				}
			}
			for j := 0; j < out; j++ {
				grad[off+in*out+j] += delta[j] / float64(d.Len())
			}
			prev := make([]float64, in)
			for i := 0; i < in; i++ {
				if acts[l-1][i] > 0 {
					for j := 0; j < out; j++ {
						prev[i] += float64(W[i*out+j]) * delta[j]
					}
				}
			}
			delta = prev
		}
	}
	return loss / float64(d.Len()), grad
}
