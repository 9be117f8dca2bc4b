package infer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/transfer"
)

// Catalog is what the service needs of the descriptor service: the node's
// own descriptors (what it may serve) and a look-up by id (to find the
// host of a model a client names).
type Catalog interface {
	Own() []*descriptors.Signed
	Get(ctx context.Context, id cid.Cid) (*descriptors.Signed, error)
}

// Store is what the service needs of the transfer service: whether the
// weights are all here, their size, and their bytes.
type Store interface {
	Complete(root cid.Cid) (bool, error)
	Stat(root cid.Cid) (transfer.Info, error)
	Export(ctx context.Context, root cid.Cid, w io.Writer) error
}

// Errors a host answers with, as sentinels the client's errors wrap.
var (
	// ErrUnknownModel: the host has no model descriptor with that id or skill.
	ErrUnknownModel = errors.New("unknown model")
	// ErrUnavailable: the model is the host's, but its weights are not
	// stored there or cannot be loaded.
	ErrUnavailable = errors.New("model unavailable")
	// ErrBusy: every query slot of the host is taken.
	ErrBusy = errors.New("host busy")
)

// loaded is one model in the cache; ready closes when the load finished.
type loaded struct {
	ready chan struct{}
	model *learn.Model
	err   error
	used  uint64
}

// models resolves requests to the node's own model descriptors and keeps
// up to max loaded models, least recently used out first.
type models struct {
	cat   Catalog
	store Store
	max   int

	mu    sync.Mutex
	cache map[string]*loaded // key: slot + " " + weights root
	clock uint64
}

func newModels(cat Catalog, st Store, max int) *models {
	return &models{cat: cat, store: st, max: max, cache: map[string]*loaded{}}
}

// resolve finds the own model descriptor a request names: by slot or
// version id, or, without a model, the most accurate one with the skill.
func (ms *models) resolve(req *Request) (*descriptors.Signed, error) {
	var best *descriptors.Signed
	bestAcc := -1.0
	for _, sd := range ms.cat.Own() {
		if sd.Kind != descriptors.KindModel || sd.Model == nil {
			continue
		}
		if req.Model != "" {
			if sd.Slot.String() == req.Model || sd.ID.String() == req.Model {
				if req.Skill != "" && !hasSkill(sd.Model, req.Skill) {
					return nil, fmt.Errorf("%w: model %s does not offer skill %q", ErrUnknownModel, req.Model, req.Skill)
				}
				return sd, nil
			}
			continue
		}
		if hasSkill(sd.Model, req.Skill) {
			if acc := accuracy(sd.Model); acc > bestAcc {
				best, bestAcc = sd, acc
			}
		}
	}
	if best == nil {
		if req.Model != "" {
			return nil, fmt.Errorf("%w: %s is not a model descriptor of this host", ErrUnknownModel, req.Model)
		}
		return nil, fmt.Errorf("%w: this host has no model with skill %q", ErrUnknownModel, req.Skill)
	}
	return best, nil
}

func hasSkill(m *descriptors.Model, skill string) bool {
	for _, s := range m.Skills {
		if s == skill {
			return true
		}
	}
	return false
}

// accuracy is the verified figure when there is one, else the claim (as
// the live map reads it).
func accuracy(m *descriptors.Model) float64 {
	acc := m.ClaimedAccuracy
	for _, e := range m.Evaluations {
		if e.Metric == "accuracy" && e.Value > 0 {
			acc = e.Value
		}
	}
	return acc
}

// get returns the loaded model of sd, loading it on first use. Concurrent
// callers of one model wait for the same load; a failed load is not
// cached, so weights added later are picked up by the next query.
func (ms *models) get(ctx context.Context, sd *descriptors.Signed) (*loaded, error) {
	key := sd.Slot.String() + " " + sd.Model.WeightsRoot
	ms.mu.Lock()
	ms.clock++
	e := ms.cache[key]
	if e == nil {
		e = &loaded{ready: make(chan struct{})}
		ms.cache[key] = e
		ms.evictLocked(key)
		e.used = ms.clock
		ms.mu.Unlock()
		e.model, e.err = ms.load(ctx, sd)
		if e.err != nil {
			ms.mu.Lock()
			if ms.cache[key] == e {
				delete(ms.cache, key)
			}
			ms.mu.Unlock()
		}
		close(e.ready)
	} else {
		e.used = ms.clock
		ms.mu.Unlock()
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// evictLocked drops the least recently used entries beyond max, never
// the one just added.
func (ms *models) evictLocked(keep string) {
	for len(ms.cache) > ms.max {
		var oldest string
		var at uint64
		for k, e := range ms.cache {
			if k != keep && (oldest == "" || e.used < at) {
				oldest, at = k, e.used
			}
		}
		if oldest == "" {
			return
		}
		delete(ms.cache, oldest)
	}
}

// size is the number of models loaded or loading.
func (ms *models) size() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.cache)
}

// load reads the weights of sd from the local store only: a host serves
// what it holds and never fetches weights on a client's behalf.
func (ms *models) load(ctx context.Context, sd *descriptors.Signed) (*learn.Model, error) {
	m := sd.Model
	name := sd.Name
	if m.WeightsRoot == "" {
		return nil, fmt.Errorf("%w: model %s has no weights_root; publish it with --weights FILE or --weights-root CID", ErrUnavailable, name)
	}
	arch, err := learn.LookupArch(m.Architecture)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s: architecture %q cannot be run here (known: %v)", ErrUnavailable, name, m.Architecture, learn.ArchNames())
	}
	if arch.Classes() > MaxClasses {
		return nil, fmt.Errorf("%w: model %s has %d classes, at most %d are served", ErrUnavailable, name, arch.Classes(), MaxClasses)
	}
	root, err := cid.Decode(m.WeightsRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s: weights_root %q is not a CID: %v", ErrUnavailable, name, m.WeightsRoot, err)
	}
	if ok, err := ms.store.Complete(root); err != nil || !ok {
		return nil, fmt.Errorf("%w: model %s: weights %s are not stored on this host (add them with `daitn add`)", ErrUnavailable, name, root)
	}
	in, err := ms.store.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s: weights %s: %v", ErrUnavailable, name, root, err)
	}
	want := learn.EncodedSize(arch)
	if in.Size != uint64(want) {
		return nil, fmt.Errorf("%w: model %s: weights %s are %d bytes, a %s model is %d", ErrUnavailable, name, root, in.Size, arch.Name, want)
	}
	var buf bytes.Buffer
	buf.Grow(want)
	if err := ms.store.Export(ctx, root, &capWriter{w: &buf, n: want}); err != nil {
		return nil, fmt.Errorf("%w: model %s: read weights %s: %v", ErrUnavailable, name, root, err)
	}
	lm, err := learn.UnmarshalAs(buf.Bytes(), arch.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: model %s: weights %s: %v", ErrUnavailable, name, root, err)
	}
	return lm, nil
}

// capWriter refuses to hold more than n bytes, whatever the store yields.
type capWriter struct {
	w io.Writer
	n int
}

func (c *capWriter) Write(p []byte) (int, error) {
	if len(p) > c.n {
		return 0, fmt.Errorf("weights longer than the %d bytes announced", c.n)
	}
	c.n -= len(p)
	return c.w.Write(p)
}
