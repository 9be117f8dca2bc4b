package train

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	ds "github.com/ipfs/go-datastore"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/transfer"
)

// StackConfig is what NewStack builds the training stack from: a node's
// networking core (host, pubsub, DHT, store, data directory).
type StackConfig struct {
	Host    host.Host
	PubSub  *pubsub.PubSub
	Routing routing.Routing // the DHT; it must have descriptors.RecordValidator for "daitn"
	Store   ds.Batching
	DataDir string
	Logger  *slog.Logger
	Roles   []string

	Descriptors []descriptors.Option
	Transfer    []transfer.Option
	Taskpool    []taskpool.Option
	Train       []Option
}

// Stack is the set of services training needs on one node, for programs
// (daitn demo) and tests that start nodes without the node's own service
// wiring.
type Stack struct {
	Desc  *descriptors.Service
	Xfer  *transfer.Service
	Pool  *taskpool.Service
	Train *Service

	once sync.Once
	err  error
}

// NewStack starts descriptors, transfer, taskpool and train on one node.
func NewStack(ctx context.Context, c StackConfig) (*Stack, error) {
	if c.Host == nil || c.Store == nil || c.DataDir == "" {
		return nil, errors.New("train stack: host, store and data dir are required")
	}
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	st := &Stack{}
	ok := false
	defer func() {
		if !ok {
			_ = st.Close()
		}
	}()
	var err error
	dopts := append([]descriptors.Option{descriptors.WithLogger(log)}, c.Descriptors...)
	if st.Desc, err = descriptors.New(ctx, c.Host, c.PubSub, c.Routing, c.Store, dopts...); err != nil {
		return nil, fmt.Errorf("train stack: descriptors: %w", err)
	}
	topts := append([]transfer.Option{transfer.WithLogger(log)}, c.Transfer...)
	if st.Xfer, err = transfer.New(ctx, c.Host, c.Routing, filepath.Join(c.DataDir, "chunks"), topts...); err != nil {
		return nil, fmt.Errorf("train stack: transfer: %w", err)
	}
	popts := append([]taskpool.Option{taskpool.WithLogger(log)}, c.Taskpool...)
	if c.Routing != nil {
		popts = append(popts, taskpool.WithRouting(c.Routing))
	}
	if st.Pool, err = taskpool.New(ctx, c.Host, c.PubSub, c.Store, popts...); err != nil {
		return nil, fmt.Errorf("train stack: taskpool: %w", err)
	}
	ropts := []Option{WithLogger(log), WithRoles(c.Roles...), WithDataDir(c.DataDir)}
	if c.Routing != nil {
		ropts = append(ropts, WithPeerRouting(c.Routing))
	}
	ropts = append(ropts, c.Train...)
	if st.Train, err = New(ctx, c.Host, c.PubSub, c.Store, st.Desc, st.Xfer, st.Pool, ropts...); err != nil {
		return nil, fmt.Errorf("train stack: %w", err)
	}
	ok = true
	return st, nil
}

// Close stops the services in reverse order of start. It is idempotent.
func (st *Stack) Close() error {
	st.once.Do(func() {
		var errs []error
		if st.Train != nil {
			errs = append(errs, st.Train.Close())
		}
		if st.Pool != nil {
			errs = append(errs, st.Pool.Close())
		}
		if st.Xfer != nil {
			errs = append(errs, st.Xfer.Close())
		}
		if st.Desc != nil {
			errs = append(errs, st.Desc.Close())
		}
		st.err = errors.Join(errs...)
	})
	return st.err
}
