package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/transfer/wire"
)

func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// bigSize is the size the issue names; under -race -short it is reduced
// because the race detector makes hashing ~10x slower.
func bigSize(t *testing.T, full int) int {
	if raceEnabled && testing.Short() {
		return full / 4
	}
	return full
}

func newSvc(t testing.TB, p *p2ptest.Peer, dir string, opts ...Option) *Service {
	t.Helper()
	var rt routing.Routing
	if p.DHT != nil {
		rt = p.DHT
	}
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := New(context.Background(), p.Host, rt, dir, append([]Option{WithNoProviderTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func exportBytes(t testing.TB, s *Service, root cid.Cid) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Export(context.Background(), root, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRoundTrip64MiB(t *testing.T) {
	n := bigSize(t, 64<<20)
	net := p2ptest.New(t, 2)
	a, b := newSvc(t, net.Peers[0], ""), newSvc(t, net.Peers[1], "")
	data := randBytes(1, n)
	root, err := a.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, b, root); !bytes.Equal(got, data) {
		t.Fatalf("fetched %d bytes differ from the %d added", len(got), len(data))
	}
	if res.Reused != 0 || res.Fetched != res.Blocks || res.Bad != 0 {
		t.Fatalf("result %+v: want every block fetched once, none bad", res)
	}
	t.Logf("%d MiB: %d blocks in %v", n>>20, res.Blocks, res.Elapsed)
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

var _ = errors.Is
var _ = io.EOF
var _ = os.Remove
var _ = filepath.Join
var _ peer.ID
var _ = wire.Protocol
