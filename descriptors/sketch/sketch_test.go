package sketch

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// TestJaccardAccuracy builds pairs of generated sample sets with known
// overlap and checks the estimate is within ±0.05 of the true Jaccard index.
func TestJaccardAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		n, shared int // each set has n samples, shared of them common
	}{
		{1000, 0}, {1000, 100}, {1000, 333}, {1000, 500}, {1000, 667}, {1000, 900}, {1000, 1000},
		{6000, 1500}, {4000, 2000}, {3000, 2400}, {300, 150},
	}
	for _, c := range cases {
		a, _ := New(DefaultK)
		b, _ := New(DefaultK)
		sample := func() []byte {
			buf := make([]byte, 784)
			for i := 0; i < len(buf); i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
			}
			return buf
		}
		for i := 0; i < c.shared; i++ {
			s := sample()
			a.Add(s)
			b.Add(s)
		}
		for i := c.shared; i < c.n; i++ {
			a.Add(sample())
			b.Add(sample())
		}
		truth := float64(c.shared) / float64(2*c.n-c.shared)
		// Round trip through the wire form on the way.
		bb, err := FromBytes(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		est, err := Jaccard(a, bb)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(est-truth) > 0.05 {
			t.Errorf("n=%d shared=%d: estimate %.3f, truth %.3f", c.n, c.shared, est, truth)
		}
		t.Logf("n=%d shared=%d: estimate %.3f truth %.3f", c.n, c.shared, est, truth)
	}
}

func TestSketchRules(t *testing.T) {
	if _, err := New(0); err == nil {
		t.Fatal("k=0 accepted")
	}
	if _, err := New(MaxK + 1); err == nil {
		t.Fatal("k too large accepted")
	}
	for _, n := range []int{0, 3, BytesPerSlot*MaxK + 2} {
		if _, err := FromBytes(make([]byte, n)); err == nil {
			t.Fatalf("FromBytes(%d bytes) accepted", n)
		}
	}
	a, _ := New(16)
	b, _ := New(32)
	if _, err := Jaccard(a, b); err == nil {
		t.Fatal("different k compared")
	}
	// Union: merging b into a gives the sketch of A∪B.
	x, _ := New(64)
	y, _ := New(64)
	u, _ := New(64)
	for i := 0; i < 100; i++ {
		s := []byte{byte(i), 1}
		if i%2 == 0 {
			x.Add(s)
		} else {
			y.Add(s)
		}
		u.Add(s)
	}
	if err := x.Merge(y); err != nil {
		t.Fatal(err)
	}
	if j, _ := Jaccard(x, u); j != 1 {
		t.Fatalf("merge is not the union sketch: jaccard %v", j)
	}
}

func FuzzFromBytes(f *testing.F) {
	m, _ := New(8)
	m.Add([]byte("x"))
	f.Add(m.Bytes())
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 2*MaxK+2))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := FromBytes(b)
		if err != nil {
			return
		}
		// Invariant: decoding is lossless and a sketch is identical to itself.
		if string(s.Bytes()) != string(b) {
			t.Fatal("round trip changed bytes")
		}
		if j, err := Jaccard(s, s); err != nil || j != 1 {
			t.Fatalf("self jaccard = %v, %v", j, err)
		}
	})
}

func BenchmarkAdd784(b *testing.B) {
	m, _ := New(DefaultK)
	s := make([]byte, 784)
	b.SetBytes(784)
	for i := 0; i < b.N; i++ {
		binary.LittleEndian.PutUint64(s, uint64(i))
		m.Add(s)
	}
}
