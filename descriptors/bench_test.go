package descriptors

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/daitn/daitn/descriptors/sketch"
)

func benchDescriptor() *Descriptor {
	sk, _ := sketch.New(sketch.DefaultK)
	for i := 0; i < 1000; i++ {
		sk.AddHash(rand.Uint64())
	}
	d := sample(KindData, "bench")
	d.Data.Sketch = SketchOf(sk)
	d.Data.Updated = time.Now()
	return d
}

// BenchmarkSign is one core's signing rate (run with -cpu 1): validate,
// deterministic CBOR, Ed25519 over the envelope, and re-open.
func BenchmarkSign(b *testing.B) {
	priv := newKey(b)
	d := benchDescriptor()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(priv, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is one core's verify rate: envelope, signature, CBOR,
// canonical check, validation.
func BenchmarkOpen(b *testing.B) {
	s, err := Sign(newKey(b), benchDescriptor())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(s.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(s.Raw); err != nil {
			b.Fatal(err)
		}
	}
}
