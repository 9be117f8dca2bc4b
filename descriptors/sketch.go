package descriptors

import (
	"fmt"

	"github.com/daitn/daitn/descriptors/sketch"
)

// SketchOf converts a built MinHash into the descriptor field.
func SketchOf(m *sketch.MinHash) *Sketch {
	if m == nil {
		return nil
	}
	return &Sketch{Algo: sketch.Algo, K: m.K(), Mins: m.Bytes()}
}

// Jaccard estimates the content overlap of the datasets behind two sketches
// (0 = disjoint, 1 = the same samples).
func (s *Sketch) Jaccard(o *Sketch) (float64, error) {
	if s == nil || o == nil {
		return 0, fmt.Errorf("jaccard: %w: a sketch is missing", sketch.ErrIncomparable)
	}
	if s.Algo != o.Algo || s.K != o.K {
		return 0, fmt.Errorf("jaccard: %w: %s/k=%d vs %s/k=%d", sketch.ErrIncomparable, s.Algo, s.K, o.Algo, o.K)
	}
	return sketch.JaccardBytes(s.Mins, o.Mins)
}
