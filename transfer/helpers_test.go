package transfer

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/transfer/wire"
)

// newHostWithKey starts a host on 127.0.0.1 with a given identity: the
// "same node restarted" of the restart tests.
func newHostWithKey(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// rawExchange sends req on a fresh stream and reads n responses, skipping
// block bodies.
func rawExchange(t testing.TB, from host.Host, to peer.ID, req *wire.Request, n int) []*wire.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := from.NewStream(ctx, to, wire.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Reset()
	_ = str.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.WriteRequest(str, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(str)
	var out []*wire.Response
	for i := 0; i < n; i++ {
		r, err := wire.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if r.Kind == wire.KindBlock {
			if _, err := io.CopyN(io.Discard, br, int64(r.Len)); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, r)
	}
	return out
}

// testLogger sends debug logs to t.Log: shown only when a test fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// newQUICHost starts a host that listens on QUIC only.
func newQUICHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// rot flips one byte of block c's data where it is stored, as a failing
// disk would.
func rot(t testing.TB, s *blockStore, c cid.Cid, at int) {
	t.Helper()
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	l, ok, err := s.lookup(c)
	if err != nil || !ok {
		t.Fatalf("rot %s: not stored (%v)", c, err)
	}
	f, err := os.OpenFile(filepath.Join(s.segDir(), segName(l.seg)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	off := l.dataOff(c) + int64(at%int(l.n))
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// segmentIDs lists the segments, oldest first.
func (s *blockStore) segmentIDs() []uint32 {
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	ids := make([]uint32, 0, len(s.segs))
	for id := range s.segs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
