package taskpool

import (
	"context"
	"sync"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// guardedStore is the node's store as the service sees it: once the
// service has closed it, every call fails with ErrClosed instead of
// reaching a store the node may be closing next (Pebble panics on use
// after Close). close waits for calls in flight, so when Service.Close
// returns nothing of ours touches the store again.
type guardedStore struct {
	mu     sync.RWMutex
	closed bool
	d      ds.Batching
}

// storeOp is one write of a batch: a put, or a delete when del is set.
type storeOp struct {
	key ds.Key
	val []byte
	del bool
}

func (g *guardedStore) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *guardedStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return ErrClosed
	}
	return g.d.Put(ctx, k, v)
}

// Write applies ops atomically, in one batch and one sync: a crash keeps
// all of them or none.
func (g *guardedStore) Write(ctx context.Context, ops ...storeOp) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return ErrClosed
	}
	if len(ops) == 1 && !ops[0].del {
		return g.d.Put(ctx, ops[0].key, ops[0].val)
	}
	b, err := g.d.Batch(ctx)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if op.del {
			err = b.Delete(ctx, op.key)
		} else {
			err = b.Put(ctx, op.key, op.val)
		}
		if err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

func (g *guardedStore) Delete(ctx context.Context, k ds.Key) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return ErrClosed
	}
	return g.d.Delete(ctx, k)
}

func (g *guardedStore) Has(ctx context.Context, k ds.Key) (bool, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false, ErrClosed
	}
	return g.d.Has(ctx, k)
}

// Query reads all matching entries before it returns, so no iterator
// outlives the guard.
func (g *guardedStore) Query(ctx context.Context, q query.Query) ([]query.Entry, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil, ErrClosed
	}
	res, err := g.d.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return res.Rest()
}
