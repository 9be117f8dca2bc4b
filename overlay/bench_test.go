package overlay

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func BenchmarkOpenBeacon(b *testing.B) {
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	now := time.Now()
	raw, err := SealBeacon(key, &Beacon{Seq: 1, Issued: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli(),
		Roles: []string{"data", "compute"}, Descriptors: []string{"bafkreiabc", "bafkreidef"}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := OpenBeacon(raw, now); err != nil {
			b.Fatal(err)
		}
	}
}
