package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/transfer/wire"
)

// blockStore keeps one file per block under dir/blocks/<xx>/<cid>. A block
// is written to dir/tmp, checked, fsynced and renamed into place, so a block
// file that exists is complete; it is still verified on every read because
// disks rot and people copy directories around.
type blockStore struct {
	dir  string
	sync bool

	mu    sync.Mutex
	dirty map[string]struct{} // block subdirectories with unsynced renames

	// removals counts deleted blocks, so answers cached about
	// completeness know when they may have gone stale.
	removals atomic.Int64
}

func openBlockStore(dir string, doSync bool) (*blockStore, error) {
	if dir == "" {
		return nil, errors.New("chunk directory is empty")
	}
	for _, d := range []string{"blocks", "tmp", "pins", "policy"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", filepath.Join(dir, d), err)
		}
	}
	// Leftovers of writes interrupted by a crash are garbage by design.
	tmp := filepath.Join(dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", tmp, err)
	}
	for _, e := range ents {
		_ = os.Remove(filepath.Join(tmp, e.Name()))
	}
	return &blockStore{dir: dir, sync: doSync, dirty: map[string]struct{}{}}, nil
}

func (s *blockStore) path(c cid.Cid) string {
	k := c.String()
	return filepath.Join(s.dir, "blocks", k[len(k)-2:], k)
}

func (s *blockStore) has(c cid.Cid) bool {
	_, err := os.Stat(s.path(c))
	return err == nil
}

// size returns the stored size of c, or -1.
func (s *blockStore) size(c cid.Cid) int64 {
	fi, err := os.Stat(s.path(c))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// put stores data as block c; verify is false only for bytes whose CID this
// process just computed.
func (s *blockStore) put(c cid.Cid, data []byte, verify bool) error {
	if verify {
		if err := wire.Verify(c, data); err != nil {
			return err
		}
	}
	final := s.path(c)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	if err := writeFileAtomic(filepath.Join(s.dir, "tmp"), final, data, s.sync); err != nil {
		return fmt.Errorf("store block %s: %w", c, err)
	}
	s.mu.Lock()
	s.dirty[filepath.Dir(final)] = struct{}{}
	s.mu.Unlock()
	return nil
}

// flush makes the renames of earlier puts durable.
func (s *blockStore) flush() error {
	if !s.sync {
		return nil
	}
	s.mu.Lock()
	dirs := s.dirty
	s.dirty = map[string]struct{}{}
	s.mu.Unlock()
	// Directory fsyncs are independent; issuing them together lets the
	// filesystem commit them in one journal transaction.
	errs := make(chan error, len(dirs))
	for d := range dirs {
		go func() { errs <- syncDir(d) }()
	}
	var first error
	for range dirs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ErrCorrupt reports a stored block that no longer matches its CID; the
// block has been removed so it can be fetched again.
var ErrCorrupt = errors.New("stored block is corrupt")

// get reads and verifies block c into buf (grown if needed). A block larger
// than limit is refused without reading it.
func (s *blockStore) get(c cid.Cid, buf []byte, limit int) ([]byte, error) {
	f, err := os.Open(s.path(c))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("block %s: %w", c, ErrNotFound)
		}
		return nil, fmt.Errorf("open block %s: %w", c, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat block %s: %w", c, err)
	}
	n := fi.Size()
	if n > int64(limit) {
		s.removals.Add(1)
		_ = os.Remove(s.path(c))
		return nil, fmt.Errorf("block %s is %d bytes, limit %d: %w", c, n, limit, ErrCorrupt)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("read block %s: %w", c, err)
	}
	if err := wire.Verify(c, buf); err != nil {
		s.removals.Add(1)
		_ = os.Remove(s.path(c))
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return buf, nil
}

func (s *blockStore) remove(c cid.Cid) error {
	s.removals.Add(1)
	if err := os.Remove(s.path(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove block %s: %w", c, err)
	}
	return nil
}

// each calls fn for every stored block.
func (s *blockStore) each(fn func(c cid.Cid, size int64) error) error {
	root := filepath.Join(s.dir, "blocks")
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		c, perr := cid.Decode(d.Name())
		if perr != nil {
			return nil // not ours
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		return fn(c, fi.Size())
	})
}

// Pins are empty files named by root CID: creating or removing one is atomic.
func (s *blockStore) pin(root cid.Cid) error {
	// A pin is an empty file: its existence is the whole content, so it
	// needs no temporary name, only a durable directory entry.
	p := filepath.Join(s.dir, "pins", root.String())
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pin %s: %w", root, err)
	}
	if s.sync {
		return syncDir(filepath.Dir(p))
	}
	return nil
}

func (s *blockStore) unpin(root cid.Cid) (bool, error) {
	err := os.Remove(filepath.Join(s.dir, "pins", root.String()))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unpin %s: %w", root, err)
	}
	return true, nil
}

func (s *blockStore) pins() ([]cid.Cid, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "pins"))
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	var out []cid.Cid
	for _, e := range ents {
		if c, err := cid.Decode(e.Name()); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

type policyFile struct {
	Allow []string `json:"allow"`
}

func (s *blockStore) savePolicy(root cid.Cid, allow []peer.ID) error {
	p := filepath.Join(s.dir, "policy", root.String())
	if allow == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clear policy of %s: %w", root, err)
		}
		return nil
	}
	pf := policyFile{Allow: []string{}}
	for _, id := range allow {
		pf.Allow = append(pf.Allow, id.String())
	}
	b, _ := json.Marshal(pf)
	if err := writeFileAtomic(filepath.Join(s.dir, "tmp"), p, b, s.sync); err != nil {
		return fmt.Errorf("save policy of %s: %w", root, err)
	}
	return nil
}

func (s *blockStore) loadPolicies() (map[cid.Cid][]peer.ID, error) {
	dir := filepath.Join(s.dir, "policy")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	out := map[cid.Cid][]peer.ID{}
	for _, e := range ents {
		c, err := cid.Decode(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read policy of %s: %w", c, err)
		}
		var pf policyFile
		if err := json.Unmarshal(b, &pf); err != nil {
			return nil, fmt.Errorf("policy of %s: %w", c, err)
		}
		ids := []peer.ID{}
		for _, s := range pf.Allow {
			id, err := peer.Decode(s)
			if err != nil {
				return nil, fmt.Errorf("policy of %s: peer %q: %w", c, s, err)
			}
			ids = append(ids, id)
		}
		out[c] = ids
	}
	return out, nil
}

func writeFileAtomic(tmpDir, final string, data []byte, doSync bool) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return err
	}
	name := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(name)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if doSync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, final); err != nil {
		return err
	}
	ok = true
	return nil
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", d, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !strings.Contains(err.Error(), "invalid argument") {
		return fmt.Errorf("sync dir %s: %w", d, err)
	}
	return nil
}
