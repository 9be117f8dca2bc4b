package dataset

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sort"
)

// Classes is the number of labels an MNIST-style set may use (digits 0..9).
const Classes = 10

// Set is a labelled image set ready for training: Len() samples of Dim()
// features each, pixels scaled from 0..255 to [0,1] as float32 so the
// training loop reads them without conversion.
type Set struct {
	// X holds the features row-major: sample i is X[i*Dim() : (i+1)*Dim()].
	X []float32
	// Y holds one label in 0..Classes-1 per sample.
	Y []uint8
	// Rows and Cols are the image shape (28×28 for MNIST); Dim = Rows*Cols.
	Rows, Cols int
}

// Len is the number of samples.
func (s *Set) Len() int { return len(s.Y) }

// Dim is the number of features per sample.
func (s *Set) Dim() int { return s.Rows * s.Cols }

// NewSet builds a Set from raw idx images and labels, checking that they
// agree in count and that every label is a digit 0..Classes-1.
func NewSet(im *Images, labels []byte) (*Set, error) {
	if im == nil {
		return nil, fmt.Errorf("new set: no images")
	}
	if im.N != len(labels) {
		return nil, fmt.Errorf("new set: %d images but %d labels; the two files must hold the same number of items", im.N, len(labels))
	}
	if d := im.Rows * im.Cols; len(im.Pix) != im.N*d {
		return nil, fmt.Errorf("new set: %d images of %dx%d need %d pixel bytes, have %d", im.N, im.Rows, im.Cols, im.N*d, len(im.Pix))
	}
	for i, l := range labels {
		if l >= Classes {
			return nil, fmt.Errorf("new set: label of sample %d is %d, labels must be 0..%d", i, l, Classes-1)
		}
	}
	s := &Set{X: make([]float32, len(im.Pix)), Y: append([]uint8(nil), labels...), Rows: im.Rows, Cols: im.Cols}
	for i, p := range im.Pix {
		s.X[i] = scale[p]
	}
	return s, nil
}

var scale = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// Images converts the set back to raw idx images and labels. Pixels are
// rounded back to bytes, so a Set read from idx files round-trips exactly.
func (s *Set) Images() (*Images, []byte) {
	im := &Images{N: s.Len(), Rows: s.Rows, Cols: s.Cols, Pix: make([]byte, len(s.X))}
	for i, x := range s.X {
		v := x*255 + 0.5
		switch {
		case v <= 0:
			im.Pix[i] = 0
		case v >= 255:
			im.Pix[i] = 255
		default:
			im.Pix[i] = byte(v)
		}
	}
	return im, append([]byte(nil), s.Y...)
}

// Subset returns a new Set holding the samples at idx, in that order
// (copies, so the result does not alias s).
func (s *Set) Subset(idx []int) *Set {
	d := s.Dim()
	out := &Set{X: make([]float32, len(idx)*d), Y: make([]uint8, len(idx)), Rows: s.Rows, Cols: s.Cols}
	for j, i := range idx {
		copy(out.X[j*d:(j+1)*d], s.X[i*d:(i+1)*d])
		out.Y[j] = s.Y[i]
	}
	return out
}

// LabelCounts counts the samples of each label.
func (s *Set) LabelCounts() [Classes]int {
	var c [Classes]int
	for _, y := range s.Y {
		if int(y) < Classes {
			c[y]++
		}
	}
	return c
}

func checkShard(s *Set, k, n int, parts int) error {
	if s == nil {
		return fmt.Errorf("no set to shard")
	}
	if n <= 0 {
		return fmt.Errorf("shard count n=%d: must be at least 1", n)
	}
	if k < 0 || k >= n {
		return fmt.Errorf("shard index k=%d: must be in 0..%d for n=%d", k, n-1, n)
	}
	if s.Len() < parts {
		return fmt.Errorf("%d samples cannot be split into %d parts; use n ≤ %d", s.Len(), parts, s.Len()*n/parts)
	}
	return nil
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6461_69746e)) // "daitn"
}

// ShardIID returns shard k (0-based) of n of s: the samples are shuffled
// with seed and cut into n equal parts (the remainder of Len()/n is dropped,
// as in the FedAvg paper's 100 clients × 600 examples). The same seed gives
// the same shards on every machine, and the n shards are disjoint.
func ShardIID(s *Set, k, n int, seed uint64) (*Set, error) {
	if err := checkShard(s, k, n, n); err != nil {
		return nil, fmt.Errorf("iid shard: %w", err)
	}
	perm := newRand(seed).Perm(s.Len())
	size := s.Len() / n
	idx := perm[k*size : (k+1)*size]
	sort.Ints(idx) // keep the original order inside a shard: stable files, better compression
	return s.Subset(idx), nil
}

// ShardNonIID returns shard k (0-based) of n of s under the FedAvg paper's
// pathological non-IID split: the samples are sorted by label, cut into 2n
// pieces of Len()/(2n) samples, and each shard receives two pieces chosen by
// a permutation seeded with seed. Most shards therefore hold examples of
// only two digits. The n shards are disjoint.
func ShardNonIID(s *Set, k, n int, seed uint64) (*Set, error) {
	if err := checkShard(s, k, n, 2*n); err != nil {
		return nil, fmt.Errorf("non-iid shard: %w", err)
	}
	// A stable counting sort by label: O(N), same order as a stable sort.
	var start [256]int
	for _, y := range s.Y {
		start[y]++
	}
	for l, sum := 0, 0; l < len(start); l++ {
		start[l], sum = sum, sum+start[l]
	}
	byLabel := make([]int, s.Len())
	for i, y := range s.Y {
		byLabel[start[y]] = i
		start[y]++
	}
	size := s.Len() / (2 * n)
	pieces := newRand(seed).Perm(2 * n)
	idx := make([]int, 0, 2*size)
	for _, p := range pieces[2*k : 2*k+2] {
		idx = append(idx, byLabel[p*size:(p+1)*size]...)
	}
	sort.Ints(idx)
	return s.Subset(idx), nil
}

// Fingerprint is a SHA-256 over the set's canonical idx encoding (plain
// images file, then plain labels file). It identifies a set's content
// independently of file names and gzip settings, e.g. as the test set id an
// MPVU puts in its evaluation reports.
func (s *Set) Fingerprint() [32]byte {
	im, labels := s.Images()
	h := sha256.New()
	_ = WriteIDXImages(h, im)
	_ = WriteIDXLabels(h, labels)
	var out [32]byte
	h.Sum(out[:0])
	return out
}
