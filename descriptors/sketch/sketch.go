package sketch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/zeebo/blake3"
)

// Algo names the hashing scheme. Sketches with different Algo or K are not
// comparable.
const Algo = "minhash-blake3-b16/v1"

// DefaultK slots of 16 bits: 2 KiB per sketch and a standard error of at
// most sqrt(0.25/1024) ≈ 0.016 on the Jaccard estimate. (b-bit MinHash: for
// a fixed size, many short minima beat fewer long ones.)
const DefaultK = 1024

// MaxK bounds K (and so the size of a decoded sketch).
const MaxK = 4096

// BytesPerSlot is the packed size of one slot.
const BytesPerSlot = 2

// ErrIncomparable is returned when two sketches differ in K.
var ErrIncomparable = errors.New("sketches are not comparable")

// MinHash keeps, for each of K hash functions, the minimum over a set of
// byte strings. A sketch built with Add keeps full 64-bit minima (so it can
// Merge); one decoded with FromBytes keeps only the 16 low bits that travel.
// The zero value is not usable; call New.
type MinHash struct {
	mins   []uint64
	seeds  []uint64
	n      int64
	packed bool
}

// New returns an empty sketch with k slots (1..MaxK).
func New(k int) (*MinHash, error) {
	if k < 1 || k > MaxK {
		return nil, fmt.Errorf("new sketch: k = %d (want 1..%d)", k, MaxK)
	}
	m := &MinHash{mins: make([]uint64, k), seeds: seeds(k)}
	for i := range m.mins {
		m.mins[i] = math.MaxUint64
	}
	return m, nil
}

// seeds are fixed per slot so every peer computes the same functions.
func seeds(k int) []uint64 {
	s := make([]uint64, k)
	x := uint64(0x6461_6974_6e2d_6d68) // "daitn-mh"
	for i := range s {
		x = splitmix(x)
		s[i] = x
	}
	return s
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	z := x
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Add puts one sample (its bytes) into the set.
func (m *MinHash) Add(sample []byte) {
	sum := blake3.Sum256(sample)
	m.AddHash(binary.LittleEndian.Uint64(sum[:8]))
}

// AddHash puts one pre-hashed sample (a uniform 64-bit hash) into the set.
// It is a no-op on a decoded (packed) sketch.
func (m *MinHash) AddHash(h uint64) {
	if m.packed {
		return
	}
	m.n++
	for i, s := range m.seeds {
		// One strong base hash, cheap independent remixes per slot.
		if v := splitmix(h ^ s); v < m.mins[i] {
			m.mins[i] = v
		}
	}
}

// K is the number of slots.
func (m *MinHash) K() int { return len(m.mins) }

// Count is the number of samples added (duplicates included).
func (m *MinHash) Count() int64 { return m.n }

// Bytes packs the low 16 bits of each minimum, little-endian.
func (m *MinHash) Bytes() []byte {
	b := make([]byte, BytesPerSlot*len(m.mins))
	for i, v := range m.mins {
		binary.LittleEndian.PutUint16(b[BytesPerSlot*i:], uint16(v))
	}
	return b
}

// FromBytes rebuilds a comparable sketch from packed minima (as carried in
// descriptors). It cannot Merge or Add.
func FromBytes(b []byte) (*MinHash, error) {
	if len(b) == 0 || len(b)%BytesPerSlot != 0 || len(b) > BytesPerSlot*MaxK {
		return nil, fmt.Errorf("decode sketch: %d bytes (want a multiple of %d, %d..%d)", len(b), BytesPerSlot, BytesPerSlot, BytesPerSlot*MaxK)
	}
	k := len(b) / BytesPerSlot
	m := &MinHash{mins: make([]uint64, k), packed: true}
	for i := range m.mins {
		m.mins[i] = uint64(binary.LittleEndian.Uint16(b[BytesPerSlot*i:]))
	}
	return m, nil
}

// Merge makes m the sketch of the union of both sets. Both must be built
// with Add (not decoded).
func (m *MinHash) Merge(o *MinHash) error {
	if len(m.mins) != len(o.mins) {
		return fmt.Errorf("merge sketch: %w: k %d vs %d", ErrIncomparable, len(m.mins), len(o.mins))
	}
	if m.packed || o.packed {
		return fmt.Errorf("merge sketch: %w: a decoded sketch keeps only 16 bits per slot", ErrIncomparable)
	}
	for i, v := range o.mins {
		if v < m.mins[i] {
			m.mins[i] = v
		}
	}
	m.n += o.n
	return nil
}

// Jaccard estimates |A∩B| / |A∪B|. With 16-bit slots two different minima
// agree by chance with probability 2^-16, so the raw match fraction f is
// corrected: J = (f - 2^-16) / (1 - 2^-16), clamped to [0,1].
func Jaccard(a, b *MinHash) (float64, error) {
	if len(a.mins) != len(b.mins) {
		return 0, fmt.Errorf("jaccard: %w: k %d vs %d", ErrIncomparable, len(a.mins), len(b.mins))
	}
	eq := 0
	for i, v := range a.mins {
		if uint16(v) == uint16(b.mins[i]) {
			eq++
		}
	}
	const c = 1.0 / 65536
	f := float64(eq) / float64(len(a.mins))
	j := (f - c) / (1 - c)
	return math.Min(1, math.Max(0, j)), nil
}

// JaccardBytes is Jaccard over two packed sketches.
func JaccardBytes(a, b []byte) (float64, error) {
	sa, err := FromBytes(a)
	if err != nil {
		return 0, err
	}
	sb, err := FromBytes(b)
	if err != nil {
		return 0, err
	}
	return Jaccard(sa, sb)
}
