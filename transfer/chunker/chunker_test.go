package chunker

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

func chunks(t testing.TB, data []byte, p Params) [][]byte {
	t.Helper()
	c, err := New(bytes.NewReader(data), p)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), ch...))
	}
}

func TestParamsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		ok   bool
	}{
		{"default", DefaultParams, true},
		{"tiny min", Params{Min: 1, Avg: 256, Max: 1024}, false},
		{"avg below min", Params{Min: 512, Avg: 256, Max: 1024}, false},
		{"max below avg", Params{Min: 64, Avg: 256, Max: 128}, false},
		{"avg not pow2", Params{Min: 64, Avg: 300, Max: 1024}, false},
		{"huge max", Params{Min: 64, Avg: 256, Max: 1 << 30}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestBoundsAndReassembly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 20<<20+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	cs := chunks(t, data, DefaultParams)
	var joined []byte
	for i, c := range cs {
		if len(c) > DefaultParams.Max || (len(c) < DefaultParams.Min && i != len(cs)-1) {
			t.Fatalf("chunk %d has size %d outside [%d,%d]", i, len(c), DefaultParams.Min, DefaultParams.Max)
		}
		joined = append(joined, c...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatal("chunks do not reassemble the input")
	}
	avg := len(data) / len(cs)
	if avg < 128<<10 || avg > 512<<10 {
		t.Errorf("average chunk %d bytes, want near %d", avg, DefaultParams.Avg)
	}
}

func TestEditSharesChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a := make([]byte, 16<<20)
	for i := range a {
		a[i] = byte(rng.Uint32())
	}
	b := append([]byte(nil), a...)
	// Insert 1000 bytes in the middle: content-defined boundaries resync.
	b = append(b[:8<<20], append(bytes.Repeat([]byte{7}, 1000), b[8<<20:]...)...)
	set := map[string]bool{}
	for _, c := range chunks(t, a, DefaultParams) {
		set[string(c)] = true
	}
	cb := chunks(t, b, DefaultParams)
	miss := 0
	for _, c := range cb {
		if !set[string(c)] {
			miss += len(c)
		}
	}
	if miss > 3<<20 {
		t.Errorf("after a 1000-byte insertion %d bytes are in new chunks, want < 3 MiB", miss)
	}
}

func TestEmptyAndSmall(t *testing.T) {
	if cs := chunks(t, nil, DefaultParams); len(cs) != 0 {
		t.Fatalf("empty input gave %d chunks", len(cs))
	}
	if cs := chunks(t, []byte("hello"), DefaultParams); len(cs) != 1 || string(cs[0]) != "hello" {
		t.Fatalf("small input gave %q", cs)
	}
}

func BenchmarkChunker(b *testing.B) {
	data := make([]byte, 64<<20)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c, _ := New(bytes.NewReader(data), DefaultParams)
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}
