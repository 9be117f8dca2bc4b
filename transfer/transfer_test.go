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
	"github.com/libp2p/go-libp2p/core/network"
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
	t.Parallel()
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

func TestFromFourHolders(t *testing.T) {
	t.Parallel()
	n := bigSize(t, 64<<20)
	net := p2ptest.New(t, 5)
	data := randBytes(2, n)
	var root cid.Cid
	for i := 0; i < 4; i++ {
		s := newSvc(t, net.Peers[i], "", WithSync(false)) // faster set-up; fsync is not under test
		r, err := s.AddBytes(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		root = r
	}
	t.Logf("added")
	client := newSvc(t, net.Peers[4], "")
	// p2ptest connects every peer to peer 0 only; connect the client to all
	// holders so it can ask them directly.
	for i := 1; i < 4; i++ {
		p2ptest.Connect(t, net.Peers[4].Host, net.Peers[i].Host)
	}
	res, err := client.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, client, root); !bytes.Equal(got, data) {
		t.Fatal("fetched bytes differ")
	}
	t.Logf("fetched in %v", res.Elapsed)
	serving := 0
	for p, st := range res.Peers {
		t.Logf("peer %s: %d blocks, %d bytes", p, st.Blocks, st.Bytes)
		if st.Blocks > 0 {
			serving++
		}
	}
	if serving < 3 {
		t.Fatalf("%d of 4 holders served blocks, want at least 3 (parallel fetch)", serving)
	}
}

func TestCorruptHolderIsDetected(t *testing.T) {
	t.Parallel()
	n := bigSize(t, 16<<20)
	net := p2ptest.New(t, 3)
	data := randBytes(3, n)
	honest := newSvc(t, net.Peers[0], "")
	root, err := honest.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	bad := &hostile{mode: "corrupt", blocks: blocksOf(t, honest, root)}
	bad.install(net.Peers[1].Host)
	client := newSvc(t, net.Peers[2], "")
	p2ptest.Connect(t, net.Peers[2].Host, net.Peers[1].Host)
	// Ask the corrupt holder first so it certainly gets work.
	res, err := client.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{Providers: []peer.ID{net.Peers[1].Host.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, client, root); !bytes.Equal(got, data) {
		t.Fatal("fetched bytes differ")
	}
	badID := net.Peers[1].Host.ID()
	if res.Bad == 0 || res.Peers[badID.String()] == nil || res.Peers[badID.String()].Bad == 0 {
		t.Fatalf("corrupt holder not detected: %+v", res)
	}
	st, _ := client.Stats()
	if st.BadPeers[badID.String()] == 0 {
		t.Fatalf("corrupt holder not penalised: %+v", st)
	}
	if tag := net.Peers[2].Host.ConnManager().GetTagInfo(badID); tag == nil || tag.Tags["daitn-transfer-bad"] >= 0 {
		t.Fatalf("connmgr tag of the corrupt holder not lowered: %+v", tag)
	}
}

func TestHostileHolders(t *testing.T) {
	t.Parallel()
	data := randBytes(4, 3<<20)
	for _, tc := range []struct {
		mode      string
		penalised bool
	}{
		{"corrupt", true},
		{"oversize", true},
		{"truncated", false},
		{"unsolicited", true},
		{"giantframe", true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			net := p2ptest.New(t, 3)
			honest := newSvc(t, net.Peers[0], "")
			root, err := honest.AddBytes(context.Background(), data)
			if err != nil {
				t.Fatal(err)
			}
			h := &hostile{mode: tc.mode, blocks: blocksOf(t, honest, root)}
			h.install(net.Peers[1].Host)
			client := newSvc(t, net.Peers[2], "")
			p2ptest.Connect(t, net.Peers[2].Host, net.Peers[1].Host)
			badID := net.Peers[1].Host.ID()

			// Alone, the hostile holder cannot make the fetch succeed, and
			// nothing it sent is stored.
			only := newSvc(t, net.Peers[2], t.TempDir(), WithNoProviderTimeout(time.Second))
			net.Peers[2].Host.RemoveStreamHandler(wire.Protocol) // only one service per host serves
			ctx := ctxT(t, 30*time.Second)
			_, err = only.fetchFrom(ctx, root, badID)
			if err == nil {
				t.Fatal("fetch from a hostile holder alone succeeded")
			}
			for c := range h.blocks {
				if c.Type() == wire.CodecRaw && only.Has(c) {
					if _, gerr := only.st.get(c, nil, wire.MaxChunkSize); gerr != nil {
						t.Fatalf("stored a bad block: %v", gerr)
					}
				}
			}
			// With an honest holder too, the result is right.
			res, err := client.Fetch(ctxT(t, 30*time.Second), root, FetchOptions{Providers: []peer.ID{badID}})
			if err != nil {
				t.Fatal(err)
			}
			if got := exportBytes(t, client, root); !bytes.Equal(got, data) {
				t.Fatal("fetched bytes differ")
			}
			gotBad := res.Peers[badID.String()] != nil && res.Peers[badID.String()].Bad > 0
			if gotBad != tc.penalised {
				t.Fatalf("penalised=%v, want %v (%+v)", gotBad, tc.penalised, res.Peers[badID.String()])
			}
		})
	}
}

func TestKillHolderHalfWayAndRestart(t *testing.T) {
	t.Parallel()
	n := bigSize(t, 64<<20)
	net := p2ptest.New(t, 2)
	holderDir := t.TempDir()
	holder := newSvc(t, net.Peers[0], holderDir)
	data := randBytes(5, n)
	root, err := holder.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	key := net.Peers[0].Host.Peerstore().PrivKey(net.Peers[0].Host.ID())
	client := newSvc(t, net.Peers[1], "", WithWindow(2<<20), WithLogger(testLogger(t)), WithNoProviderTimeout(30*time.Second))

	killed := make(chan int64, 1)
	var once bool
	progress := func(p Progress) {
		if !once && p.TotalBytes > 0 && p.DoneBytes > p.TotalBytes/2 {
			once = true
			// Kill the only holder: its service and its host.
			_ = holder.Close()
			_ = net.Peers[0].Host.Close()
			killed <- p.DoneBytes
		}
	}
	type out struct {
		res *FetchResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := client.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{Progress: progress, ProgressInterval: 5 * time.Millisecond})
		done <- out{res, err}
	}()
	var at int64
	select {
	case at = <-killed:
	case o := <-done:
		t.Fatalf("fetch ended before the holder was killed: %+v %v", o.res, o.err)
	}
	// Restart the holder: same key, same chunk directory, new port. Wait
	// until the old connection is gone, or Connect would see "already
	// connected" and not dial the new host.
	p2ptest.Eventually(t, 10*time.Second, "the old holder's connection to close", func() bool {
		return net.Peers[1].Host.Network().Connectedness(net.Peers[0].Host.ID()) != network.Connected
	})
	h2 := newHostWithKey(t, key)
	holder2, err := New(context.Background(), h2, nil, holderDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder2.Close() })
	p2ptest.Connect(t, net.Peers[1].Host, h2)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if got := exportBytes(t, client, root); !bytes.Equal(got, data) {
		t.Fatal("fetched bytes differ")
	}
	// Every block crossed the network exactly once: nothing stored before
	// the kill was asked for again.
	st, _ := client.Stats()
	if o.res.Fetched != o.res.Blocks || o.res.Duplicates != 0 || st.FetchedBlocks != int64(o.res.Blocks) {
		t.Fatalf("blocks=%d fetched=%d duplicates=%d received=%d: some were downloaded twice",
			o.res.Blocks, o.res.Fetched, o.res.Duplicates, st.FetchedBlocks)
	}
	t.Logf("killed at %d of %d bytes; restarted holder served the rest; %d blocks each fetched once", at, n, o.res.Blocks)
}

func TestResumeAfterFetcherRestart(t *testing.T) {
	t.Parallel()
	n := bigSize(t, 32<<20)
	net := p2ptest.New(t, 2)
	holder := newSvc(t, net.Peers[0], "")
	data := randBytes(6, n)
	root, err := holder.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c1 := newSvc(t, net.Peers[1], dir, WithWindow(1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = c1.Fetch(ctx, root, FetchOptions{ProgressInterval: 5 * time.Millisecond, Progress: func(p Progress) {
		if p.TotalBytes > 0 && p.DoneBytes > p.TotalBytes/3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted fetch: %v, want context.Canceled", err)
	}
	_ = c1.Close() // the fetcher "crashes"; a new service opens the same directory
	c2 := newSvc(t, net.Peers[1], dir)
	res, err := c2.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, c2, root); !bytes.Equal(got, data) {
		t.Fatal("fetched bytes differ")
	}
	if res.Reused == 0 || res.Reused+res.Fetched != res.Blocks {
		t.Fatalf("resume: %+v, want reused>0 and reused+fetched=blocks", res)
	}
	t.Logf("resumed: %d of %d blocks were already stored, fetched %d bytes of %d", res.Reused, res.Blocks, res.FetchedBytes, n)
}

func TestSmallEditTransfersLittle(t *testing.T) {
	t.Parallel()
	n := bigSize(t, 32<<20)
	net := p2ptest.New(t, 2)
	a, b := newSvc(t, net.Peers[0], ""), newSvc(t, net.Peers[1], "")
	dir := t.TempDir()
	path := filepath.Join(dir, "model.bin")
	v1 := randBytes(7, n)
	if err := os.WriteFile(path, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	r1, err := a.AddFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctxT(t, 60*time.Second), r1, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Change 1% of the file in place, as a fine-tuned layer would.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(randBytes(8, n/100), int64(n/3)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	v2, _ := os.ReadFile(path)
	r2, err := a.AddFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Fetch(ctxT(t, 60*time.Second), r2, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, b, r2); !bytes.Equal(got, v2) {
		t.Fatal("new version differs")
	}
	ratio := float64(res.FetchedBytes) / float64(n)
	t.Logf("1%% edit of %d MiB: fetched %d bytes (%.2f%%), reused %d of %d blocks", n>>20, res.FetchedBytes, 100*ratio, res.Reused, res.Blocks)
	if ratio >= 0.10 {
		t.Fatalf("new version transferred %.1f%% of its size, want < 10%%", 100*ratio)
	}
}

func TestPrivateRootRefused(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 3)
	owner, friend, stranger := newSvc(t, net.Peers[0], ""), newSvc(t, net.Peers[1], ""), newSvc(t, net.Peers[2], "", WithNoProviderTimeout(3*time.Second))
	data := randBytes(9, 2<<20)
	root, err := owner.AddBytes(context.Background(), data, Private(net.Peers[1].Host.ID()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = stranger.Fetch(ctxT(t, 20*time.Second), root, FetchOptions{})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("stranger fetch: %v, want ErrRefused", err)
	}
	t.Logf("stranger got: %v", err)
	if _, err := friend.Fetch(ctxT(t, 20*time.Second), root, FetchOptions{Providers: []peer.ID{net.Peers[0].Host.ID()}}); err != nil {
		t.Fatalf("allowed peer: %v", err)
	}
	if got := exportBytes(t, friend, root); !bytes.Equal(got, data) {
		t.Fatal("friend got different bytes")
	}
	// The friend keeps it private: the stranger cannot get it from there.
	p2ptest.Connect(t, net.Peers[2].Host, net.Peers[1].Host)
	if in, err := friend.Stat(root); err != nil || !in.Private {
		t.Fatalf("friend's copy: %+v %v, want private", in, err)
	}
	if r := rawExchange(t, net.Peers[2].Host, net.Peers[1].Host.ID(), &wire.Request{Kind: wire.KindHave, Root: root}, 1); r[0].Have != wire.HaveRefused {
		t.Fatalf("friend answered the stranger with have=%d, want refused", r[0].Have)
	}
	// Asking for a private chunk under some public root is refused too.
	pub, err := owner.AddBytes(context.Background(), []byte("public"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := blocksOf(t, owner, root)
	var chunk cid.Cid
	for c := range blocks {
		if c.Type() == wire.CodecRaw {
			chunk = c
			break
		}
	}
	resps := rawExchange(t, net.Peers[2].Host, net.Peers[0].Host.ID(), &wire.Request{Kind: wire.KindWant, Root: pub, CIDs: []cid.Cid{chunk}}, 1)
	if resps[0].Kind != wire.KindRefused {
		t.Fatalf("private chunk under a public root: kind %d, want refused", resps[0].Kind)
	}
	// The policy survives a restart of the owner.
	_ = owner.Close()
	owner2, err := New(context.Background(), net.Peers[0].Host, nil, owner.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer owner2.Close()
	if in, err := owner2.Stat(root); err != nil || !in.Private || len(in.Allow) != 1 {
		t.Fatalf("after restart: %+v %v", in, err)
	}
}

func TestDirectoryRoundTrip(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 2)
	a, b := newSvc(t, net.Peers[0], ""), newSvc(t, net.Peers[1], "")
	src := t.TempDir()
	files := map[string][]byte{
		"a.txt":             []byte("hello"),
		"empty":             nil,
		"sub/weights.bin":   randBytes(10, 3<<20),
		"sub/deeper/x.json": []byte(`{"x":1}`),
		"sub/dup.bin":       randBytes(10, 3<<20), // same content: shares chunks
	}
	for name, b := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := a.AddFile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctxT(t, 30*time.Second), root, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := b.ExportPath(context.Background(), root, out); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes, err %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	if err := b.Export(context.Background(), root, io.Discard); !errors.Is(err, ErrIsDir) {
		t.Fatalf("Export of a directory to a stream: %v, want ErrIsDir", err)
	}
	in, err := b.Stat(root)
	if err != nil || in.Type != "dir" || !in.Complete || !in.Pinned {
		t.Fatalf("Stat = %+v, %v", in, err)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 1)
	s := newSvc(t, net.Peers[0], "")
	ctx := context.Background()
	shared := randBytes(11, 2<<20)
	r1, _ := s.AddBytes(ctx, append(append([]byte(nil), shared...), randBytes(12, 2<<20)...))
	r2, _ := s.AddBytes(ctx, append(append([]byte(nil), shared...), randBytes(13, 2<<20)...))
	before, _ := s.Stats()
	if err := s.Unpin(ctx, r1); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpin(ctx, r1); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("second unpin: %v, want ErrNotPinned", err)
	}
	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := s.Stats()
	if res.Removed == 0 || after.Blocks != before.Blocks-res.Removed {
		t.Fatalf("gc %+v: blocks %d -> %d", res, before.Blocks, after.Blocks)
	}
	if s.Has(r1) {
		t.Fatal("unpinned root survived GC")
	}
	if ok, _ := s.Complete(r2); !ok {
		t.Fatal("pinned root lost blocks to GC (shared chunks must stay)")
	}
	if err := s.Pin(ctx, r1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pin of a collected root: %v, want ErrNotFound", err)
	}
}

func TestCorruptBlockOnDiskIsNotServed(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 3)
	a := newSvc(t, net.Peers[0], "")
	data := randBytes(14, 2<<20)
	root, _ := a.AddBytes(context.Background(), data)
	// Rot one chunk on a's disk.
	var victim cid.Cid
	for c := range blocksOf(t, a, root) {
		if c.Type() == wire.CodecRaw {
			victim = c
			break
		}
	}
	rot(t, a.st, victim, 0)
	resps := rawExchange(t, net.Peers[1].Host, net.Peers[0].Host.ID(), &wire.Request{Kind: wire.KindWant, Root: root, CIDs: []cid.Cid{victim}}, 1)
	if resps[0].Kind != wire.KindNotFound {
		t.Fatalf("rotten block served: kind %d", resps[0].Kind)
	}
	if a.Has(victim) {
		t.Fatal("rotten block not removed")
	}
}

func TestManifestTooLargeRefused(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 2)
	// A manifest listing 2000 chunks of 1 MiB that do not exist: the
	// fetcher must refuse before writing anything.
	m := &wire.Manifest{Type: wire.TypeFile}
	for i := 0; i < 2000; i++ {
		m.Chunks = append(m.Chunks, wire.Chunk{CID: wire.Sum(wire.CodecRaw, []byte{byte(i), byte(i >> 8)}), Size: 1 << 20})
		m.Size += 1 << 20
	}
	mb, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	root := wire.Sum(wire.CodecManifest, mb)
	h := &hostile{mode: "honest", blocks: map[cid.Cid][]byte{root: mb}}
	h.install(net.Peers[0].Host)
	c := newSvc(t, net.Peers[1], "", WithMaxFetchSize(1<<30))
	_, err = c.Fetch(ctxT(t, 20*time.Second), root, FetchOptions{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("fetch of a 2 GiB root with a 1 GiB limit: %v, want ErrTooLarge", err)
	}
	t.Logf("refused: %v", err)
	if st, _ := c.Stats(); st.Blocks > 1 {
		t.Fatalf("%d blocks stored for a refused root", st.Blocks)
	}
}

func TestGCWaitsForFetchWithoutBlockingAdds(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 1)
	s := newSvc(t, net.Peers[0], "")
	// A fetch of a root nobody has holds the store busy.
	missing := wire.Sum(wire.CodecManifest, []byte("nobody has this"))
	fctx, cancel := context.WithCancel(context.Background())
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		_, _ = s.Fetch(fctx, missing, FetchOptions{})
	}()
	p2ptest.Eventually(t, 5*time.Second, "the fetch to hold the store", func() bool {
		if s.gcMu.TryLock() {
			s.gcMu.Unlock()
			return false
		}
		return true
	})
	gctx, gcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer gcancel()
	gcErr := make(chan error, 1)
	go func() { _, err := s.GC(gctx); gcErr <- err }()
	// While GC waits, adds still go through.
	if _, err := s.AddBytes(ctxT(t, 5*time.Second), []byte("still works")); err != nil {
		t.Fatal(err)
	}
	if err := <-gcErr; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GC during a fetch: %v, want it to wait and then give up", err)
	}
	cancel()
	<-fetchDone
	if _, err := s.GC(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("GC after the fetch ended: %v", err)
	}
}

func TestSlowHolderGetsLessWork(t *testing.T) {
	t.Parallel()
	n := bigSize(t, 16<<20)
	net := p2ptest.New(t, 3)
	fast := newSvc(t, net.Peers[0], "")
	data := randBytes(30, n)
	root, err := fast.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	slow := &hostile{mode: "slow", blocks: blocksOf(t, fast, root)}
	slow.install(net.Peers[1].Host)
	client := newSvc(t, net.Peers[2], "", WithWindow(2<<20))
	p2ptest.Connect(t, net.Peers[2].Host, net.Peers[1].Host)
	res, err := client.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{
		Providers: []peer.ID{net.Peers[1].Host.ID(), net.Peers[0].Host.ID()}})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, client, root); !bytes.Equal(got, data) {
		t.Fatal("fetched bytes differ")
	}
	fs, ss := res.Peers[net.Peers[0].Host.ID().String()], res.Peers[net.Peers[1].Host.ID().String()]
	if fs == nil || ss == nil {
		t.Fatalf("both holders should have been used: %+v", res.Peers)
	}
	t.Logf("fast holder served %d blocks, slow holder %d (duplicates in end game: %d)", fs.Blocks, ss.Blocks, res.Duplicates)
	if ss.Blocks >= fs.Blocks {
		t.Fatalf("slow holder served %d blocks, fast %d: the slow one should get less work", ss.Blocks, fs.Blocks)
	}
}

func TestFindHolderThroughDHT(t *testing.T) {
	t.Parallel()
	// Star: everyone is connected to peer 0 only. The holder (1) and the
	// fetcher (2) are not connected; the fetcher finds the holder through
	// the provider record the holder put in the DHT.
	net := p2ptest.New(t, 3, p2ptest.WithDHT())
	holder := newSvc(t, net.Peers[1], "")
	fetcher := newSvc(t, net.Peers[2], "")
	data := randBytes(40, 2<<20)
	root, err := holder.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	// The DHT's routing-table refresh may have connected them: cut that
	// link and forget the holder's addresses, so only the DHT can lead the
	// fetcher back to it.
	hid := net.Peers[1].Host.ID()
	_ = net.Peers[2].Host.Network().ClosePeer(hid)
	net.Peers[2].Host.Peerstore().ClearAddrs(hid)
	res, err := fetcher.Fetch(ctxT(t, 30*time.Second), root, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, fetcher, root); !bytes.Equal(got, data) {
		t.Fatal("fetched bytes differ")
	}
	if st := res.Peers[net.Peers[1].Host.ID().String()]; st == nil || st.Blocks == 0 {
		t.Fatalf("holder found through the DHT did not serve: %+v", res.Peers)
	}
}

func TestRottenLocalManifestIsFetchedAgain(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 2)
	a, b := newSvc(t, net.Peers[0], ""), newSvc(t, net.Peers[1], "")
	data := randBytes(41, 1<<20)
	root, _ := a.AddBytes(context.Background(), data)
	if _, err := b.Fetch(ctxT(t, 20*time.Second), root, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Rot b's copy of the manifest.
	rot(t, b.st, root, 1<<30)
	res, err := b.Fetch(ctxT(t, 20*time.Second), root, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 1 || res.Reused != res.Blocks-1 {
		t.Fatalf("after rot: %+v, want only the manifest fetched again", res)
	}
	if got := exportBytes(t, b, root); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after repair")
	}
}

func TestSetPolicyTogglesAccess(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 2)
	owner := newSvc(t, net.Peers[0], "")
	root, _ := owner.AddBytes(context.Background(), randBytes(42, 300<<10))
	asker := net.Peers[1].Host
	have := func() wire.HaveStatus {
		return rawExchange(t, asker, net.Peers[0].Host.ID(), &wire.Request{Kind: wire.KindHave, Root: root}, 1)[0].Have
	}
	for _, tc := range []struct {
		name  string
		allow []peer.ID
		want  wire.HaveStatus
	}{
		{"public", nil, wire.HaveFull},
		{"private, nobody allowed", []peer.ID{}, wire.HaveRefused},
		{"private, asker allowed", []peer.ID{asker.ID()}, wire.HaveFull},
		{"public again", nil, wire.HaveFull},
	} {
		if err := owner.SetPolicy(root, tc.allow); err != nil {
			t.Fatal(err)
		}
		if got := have(); got != tc.want {
			t.Errorf("%s: have = %d, want %d", tc.name, got, tc.want)
		}
	}
	if err := owner.SetPolicy(cid.Undef, nil); err == nil {
		t.Error("SetPolicy accepted an empty CID")
	}
}

func TestRoundTripOverQUIC(t *testing.T) {
	t.Parallel()
	ha, hb := newQUICHost(t), newQUICHost(t)
	a, err := New(context.Background(), ha, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(context.Background(), hb, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p2ptest.Connect(t, hb, ha)
	data := randBytes(43, 8<<20)
	root, err := a.AddBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := exportBytes(t, b, root); !bytes.Equal(got, data) {
		t.Fatal("bytes differ over QUIC")
	}
}

func TestCloseDuringFetch(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 2)
	a := newSvc(t, net.Peers[0], "", WithSync(false))
	root, _ := a.AddBytes(context.Background(), randBytes(44, 16<<20))
	// One block in flight at a time: the fetch cannot finish before Close
	// lands.
	b := newSvc(t, net.Peers[1], "", WithWindow(256<<10))
	closed := make(chan struct{})
	var once bool
	errc := make(chan error, 1)
	go func() {
		_, err := b.Fetch(ctxT(t, 60*time.Second), root, FetchOptions{ProgressInterval: 5 * time.Millisecond, Progress: func(p Progress) {
			if !once && p.DoneBytes > 0 {
				once = true
				go func() { _ = b.Close(); close(closed) }()
			}
		}})
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("fetch interrupted by Close: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Fetch did not return after Close")
	}
	<-closed
	// The holder keeps serving others after its client went away.
	c := newSvc(t, net.Peers[1], "")
	if _, err := c.Fetch(ctxT(t, 30*time.Second), root, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
}
