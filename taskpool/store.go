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
	d      ds.Datastore
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
