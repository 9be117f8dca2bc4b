package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

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
