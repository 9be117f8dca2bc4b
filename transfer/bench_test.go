package transfer

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/p2ptest"
)

// BenchmarkFetch measures one holder to one fetcher over real libp2p TCP on
// loopback; bench/transfer compares it with plain TCP and TLS copies.
func BenchmarkFetch64MiB(b *testing.B) {
	net := p2ptest.New(b, 2)
	holder := newSvc(b, net.Peers[0], "", WithSync(false))
	data := randBytes(50, 64<<20)
	root, err := holder.AddBytes(context.Background(), data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := newSvc(b, net.Peers[1], b.TempDir(), WithSync(true))
		b.StartTimer()
		if _, err := c.Fetch(context.Background(), root, FetchOptions{Providers: []peer.ID{net.Peers[0].Host.ID()}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = c.Close()
		b.StartTimer()
	}
}
