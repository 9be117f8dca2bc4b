package transfer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/transfer/wire"
)

func openTestStore(t testing.TB, dir string) *blockStore {
	t.Helper()
	s, err := openBlockStore(dir, true, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.close() })
	return s
}

// storeBlock puts block i of a deterministic sequence and returns its CID.
func storeBlock(t testing.TB, s *blockStore, i int) (cid.Cid, []byte) {
	t.Helper()
	b := randBytes(uint64(1000+i), 64<<10+i)
	c := wire.Sum(wire.CodecRaw, b)
	if err := s.put(c, b, true); err != nil {
		t.Fatal(err)
	}
	return c, b
}

func TestSegmentStorePutGetReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	want := map[cid.Cid][]byte{}
	for i := range 20 {
		c, b := storeBlock(t, s, i)
		want[c] = b
		// Readable at once, before any flush.
		got, err := s.get(c, nil, wire.MaxChunkSize)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("block %d before flush: %v", i, err)
		}
	}
	// The same bytes again are not stored twice.
	before := s.diskBytes()
	storeBlock(t, s, 3)
	if s.diskBytes() != before {
		t.Fatalf("duplicate put grew the store from %d to %d bytes", before, s.diskBytes())
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	n := 0
	if err := s2.each(func(c cid.Cid, size int64) error {
		n++
		if int(size) != len(want[c]) {
			return fmt.Errorf("block %s: size %d, want %d", c, size, len(want[c]))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("after reopen: %d blocks, want %d", n, len(want))
	}
	for c, b := range want {
		got, err := s2.get(c, nil, wire.MaxChunkSize)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("block %s after reopen: %v", c, err)
		}
	}
	// A new session never appends to an old segment (its tail may be torn).
	storeBlock(t, s2, 100)
	if ids := s2.segmentIDs(); len(ids) != 2 {
		t.Fatalf("segments after reopen and a put: %v, want 2", ids)
	}
}

func TestSegmentStoreDetectsRotAndMismatch(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, t.TempDir())
	c0, _ := storeBlock(t, s, 0)
	c1, b1 := storeBlock(t, s, 1)
	rot(t, s, c0, 77)
	if _, err := s.get(c0, nil, wire.MaxChunkSize); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("rotten block: %v, want ErrCorrupt", err)
	}
	if s.has(c0) {
		t.Fatal("rotten block still indexed")
	}
	// An index entry pointing at another block's record is caught by the
	// header, before any hashing.
	l1, _, _ := s.lookup(c1)
	c2 := wire.Sum(wire.CodecRaw, []byte("other"))
	if err := s.db.Set(idxKey(c2), encodeLoc(l1), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.get(c2, nil, wire.MaxChunkSize); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "another block") {
		t.Fatalf("mismatched index entry: %v", err)
	}
	// Too large for the caller's limit: refused without reading.
	if _, err := s.get(c1, nil, len(b1)-1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("over-limit block: %v", err)
	}
}

func TestSegmentStoreCompaction(t *testing.T) {
	t.Parallel()
	net := p2ptest.New(t, 1)
	dir := t.TempDir()
	s := newSvc(t, net.Peers[0], dir)
	s.st.segMax = 1 << 20 // many small segments
	ctx := context.Background()
	a := randBytes(51, 4<<20)
	b := randBytes(52, 4<<20)
	ra, err := s.AddBytes(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.AddBytes(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	before := s.st.diskBytes()
	if err := s.Unpin(ctx, ra); err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := s.st.diskBytes()
	t.Logf("gc: %+v; segment bytes %d -> %d", res, before, after)
	if res.Removed == 0 || res.ReclaimedBytes < int64(len(a))/2 || after > before-int64(len(a))/2 {
		t.Fatalf("gc reclaimed too little: %+v, %d -> %d bytes", res, before, after)
	}
	if s.Has(ra) {
		t.Fatal("unpinned root survived gc")
	}
	if st, err := s.Stats(); err != nil || st.DiskBytes != after || st.Bytes > after {
		t.Fatalf("stats after gc: %+v, %v; segment bytes %d", st, err, after)
	}
	if got := exportBytes(t, s, rb); !bytes.Equal(got, b) {
		t.Fatal("kept file differs after compaction")
	}
	// And after a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := newSvc(t, net.Peers[0], dir)
	if got := exportBytes(t, s2, rb); !bytes.Equal(got, b) {
		t.Fatal("kept file differs after compaction and restart")
	}
}

func TestSegmentStoreMigratesFileBlocks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := randBytes(61, 100<<10)
	c := wire.Sum(wire.CodecRaw, b)
	k := c.String()
	old := filepath.Join(dir, "blocks", k[len(k)-2:])
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, k), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A rotten block in the old layout is dropped, not imported.
	bad := wire.Sum(wire.CodecRaw, []byte("rotten"))
	kb := bad.String()
	_ = os.MkdirAll(filepath.Join(dir, "blocks", kb[len(kb)-2:]), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "blocks", kb[len(kb)-2:], kb), []byte("rotted"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openTestStore(t, dir)
	got, err := s.get(c, nil, wire.MaxChunkSize)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("migrated block: %v", err)
	}
	if s.has(bad) {
		t.Fatal("rotten old block was imported")
	}
	if _, err := os.Stat(filepath.Join(dir, "blocks")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old block directory still there: %v", err)
	}
}

// TestSegmentStoreSurvivesKill9 runs a child process that stores blocks
// and reports each flush, SIGKILLs it while it is writing, and checks
// that every block it reported durable is intact after reopening, and
// that nothing unreadable is indexed.
func TestSegmentStoreSurvivesKill9(t *testing.T) {
	if dir := os.Getenv("DAITN_SEGSTORE_CHILD"); dir != "" {
		segstoreChild(dir)
		return
	}
	t.Parallel()
	for round := range 3 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSegmentStoreSurvivesKill9$")
		cmd.Env = append(os.Environ(), "DAITN_SEGSTORE_CHILD="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		durable := -1
		sc := bufio.NewScanner(out)
		deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "durable "); ok {
				durable, _ = strconv.Atoi(n)
				if durable >= 10+10*round {
					break
				}
			}
		}
		deadline.Stop()
		// Kill it mid-write (the child never stops writing on its own),
		// later in each round so unindexed bytes are left behind too.
		time.Sleep(time.Duration(round*15) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		go func() { _, _ = io.Copy(io.Discard, out) }()
		_ = cmd.Wait()
		if durable < 0 {
			t.Fatal("child reported nothing durable")
		}
		s := openTestStore(t, dir)
		for i := range durable {
			b := randBytes(uint64(1000+i), 64<<10+i)
			c := wire.Sum(wire.CodecRaw, b)
			got, err := s.get(c, nil, wire.MaxChunkSize)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("round %d: block %d of %d acknowledged as durable is lost: %v", round, i, durable, err)
			}
		}
		indexed := 0
		if err := s.each(func(c cid.Cid, _ int64) error {
			indexed++
			_, err := s.get(c, nil, wire.MaxChunkSize)
			return err
		}); err != nil {
			t.Fatalf("round %d: an indexed block is unreadable after the kill: %v", round, err)
		}
		// Writing goes on after a kill.
		storeBlock(t, s, 5000)
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d durable blocks; %d indexed and intact on reopen", round, durable, indexed)
		_ = s.close()
	}
}

func segstoreChild(dir string) {
	s, err := openBlockStore(dir, true, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	stop := time.Now().Add(30 * time.Second) // bounded even if the parent never kills
	for i := 0; i < 100000 && time.Now().Before(stop); i++ {
		b := randBytes(uint64(1000+i), 64<<10+i)
		if err := s.put(wire.Sum(wire.CodecRaw, b), b, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i%5 == 4 {
			if err := s.flush(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Printf("durable %d\n", i+1)
		}
	}
	os.Exit(0)
}

// FuzzSegmentRecord feeds arbitrary bytes to the decoders of what the
// store reads back from disk: index values and record headers.
func FuzzSegmentRecord(f *testing.F) {
	c := wire.Sum(wire.CodecRaw, []byte("x"))
	f.Add(recordHeader(c, 1), encodeLoc(loc{seg: 1, off: 2, n: 1}), uint32(1))
	f.Add([]byte("dblk"), []byte{0, 0, 0, 1}, uint32(0))
	f.Fuzz(func(t *testing.T, h, v []byte, n uint32) {
		if l, err := decodeLoc(v); err == nil {
			if l.off < 0 || !bytes.Equal(encodeLoc(l), v) {
				t.Fatalf("index value %x decoded to %+v", v, l)
			}
		}
		if err := checkHeader(h, c, n); err == nil && !bytes.Equal(h, recordHeader(c, int(n))) {
			t.Fatalf("header %x accepted for %s/%d", h, c, n)
		}
	})
}

func TestCIDJSONIsAString(t *testing.T) {
	c := wire.Sum(wire.CodecRaw, []byte("x"))
	b, err := json.Marshal(Info{Root: CID{c}})
	if err != nil || !strings.Contains(string(b), `"root":"`+c.String()+`"`) {
		t.Fatalf("json %s, %v", b, err)
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil || !in.Root.Equals(c) {
		t.Fatalf("round trip: %v %v", in.Root, err)
	}
	for _, bad := range []string{`{"root":"nope"}`, `{"root":7}`} {
		if err := json.Unmarshal([]byte(bad), &in); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
	if err := json.Unmarshal([]byte(`{"root":null}`), &in); err != nil || in.Root.Defined() {
		t.Fatalf("null root: %v %v", in.Root, err)
	}
}

// TestSegmentStoreConcurrent runs writers, readers, removals, the
// background flusher and then a compaction (with readers still going), as
// the service does: adds and fetches never overlap GC, serving does.
func TestSegmentStoreConcurrent(t *testing.T) {
	t.Parallel()
	s := openTestStore(t, t.TempDir())
	s.segMax = 512 << 10
	const writers, per = 4, 24
	cids := make([][]cid.Cid, writers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readErr atomic.Value
	reader := func() {
		defer wg.Done()
		buf := make([]byte, 0, wire.MaxChunkSize)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b := randBytes(uint64(1000+i%(writers*per)), 64<<10+i%(writers*per))
			c := wire.Sum(wire.CodecRaw, b)
			got, err := s.get(c, buf[:0], wire.MaxChunkSize)
			if err != nil && !errors.Is(err, ErrNotFound) {
				readErr.Store(err)
				return
			}
			if err == nil && !bytes.Equal(got, b) {
				readErr.Store(fmt.Errorf("block %s read back different bytes", c))
				return
			}
		}
	}
	wg.Add(2)
	go reader()
	go reader()
	var ww sync.WaitGroup
	for w := range writers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for i := range per {
				k := w*per + i
				b := randBytes(uint64(1000+k), 64<<10+k) // as storeBlock, which may not t.Fatal here
				c := wire.Sum(wire.CodecRaw, b)
				if err := s.put(c, b, true); err != nil {
					t.Error(err)
					return
				}
				cids[w] = append(cids[w], c)
				if i%8 == 7 {
					if err := s.flush(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	ww.Wait()
	// Remove two blocks of three, so most segments are mostly garbage,
	// then compact while the readers read.
	removed := map[cid.Cid]bool{}
	for w := range writers {
		for i, c := range cids[w] {
			if i%3 != 0 {
				if err := s.remove(c); err != nil {
					t.Fatal(err)
				}
				removed[c] = true
			}
		}
	}
	freed, err := s.compact()
	if err != nil {
		t.Fatal(err)
	}
	if freed == 0 {
		t.Fatal("compaction freed nothing")
	}
	close(stop)
	wg.Wait()
	if err, _ := readErr.Load().(error); err != nil {
		t.Fatalf("concurrent read: %v", err)
	}
	for w := range writers {
		for i, c := range cids[w] {
			_, err := s.get(c, nil, wire.MaxChunkSize)
			switch {
			case removed[c] && !errors.Is(err, ErrNotFound):
				t.Fatalf("removed block %s: %v", c, err)
			case !removed[c] && err != nil:
				t.Fatalf("kept block %d/%d after compaction: %v", w, i, err)
			}
		}
	}
	t.Logf("compaction returned %d bytes; %d segments left", freed, len(s.segmentIDs()))
}
