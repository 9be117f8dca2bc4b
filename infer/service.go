package infer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/daitn/daitn/overlay"
	"github.com/daitn/daitn/taskpool"
)

// ErrClosed is returned by calls on a closed Service.
var ErrClosed = errors.New("inference service closed")

type config struct {
	logger         *slog.Logger
	snapshot       func() *overlay.Snapshot
	concurrent     int
	queue          int
	queueWait      time.Duration
	maxLoaded      int
	readTimeout    time.Duration
	writeTimeout   time.Duration
	attempts       int
	attemptTimeout time.Duration
	loadChanged    func()
	taskpool       func() *taskpool.Service
	servePool      string
}

// Option configures New.
type Option func(*config) error

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l != nil {
			c.logger = l
		}
		return nil
	}
}

// WithMap sets where Query gets its view of the network (the overlay
// service's Snapshot). Without it Query fails; Ask still works.
func WithMap(snapshot func() *overlay.Snapshot) Option {
	return func(c *config) error { c.snapshot = snapshot; return nil }
}

// WithLimits sets how many queries run at once (default: the number of
// CPUs) and how many more may wait for a slot (default: as many again).
// Beyond that a host answers busy at once.
func WithLimits(concurrent, queue int) Option {
	return func(c *config) error {
		if concurrent < 1 || concurrent > 4096 || queue < 0 || queue > 65536 {
			return fmt.Errorf("infer option limits concurrent=%d queue=%d: want 1..4096 and 0..65536", concurrent, queue)
		}
		c.concurrent, c.queue = concurrent, queue
		return nil
	}
}

// WithQueueWait bounds how long a queued query waits for a slot before it
// is answered busy (default 1s).
func WithQueueWait(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 || d > time.Minute {
			return fmt.Errorf("infer option queue wait=%s: want 0..1m", d)
		}
		c.queueWait = d
		return nil
	}
}

// WithMaxLoaded bounds the models kept loaded in memory (default 8).
func WithMaxLoaded(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1024 {
			return fmt.Errorf("infer option max loaded=%d: want 1..1024", n)
		}
		c.maxLoaded = n
		return nil
	}
}

// WithStreamTimeouts sets the host's deadline for reading a request
// (default 10s) and for writing the answer (default 5s).
func WithStreamTimeouts(read, write time.Duration) Option {
	return func(c *config) error {
		if read <= 0 || write <= 0 {
			return fmt.Errorf("infer option stream timeouts read=%s write=%s: both must be > 0", read, write)
		}
		c.readTimeout, c.writeTimeout = read, write
		return nil
	}
}

// WithFailover sets how many hosts Query tries at most (default 3) and the
// time each attempt gets (default 5s).
func WithFailover(attempts int, perAttempt time.Duration) Option {
	return func(c *config) error {
		if attempts < 1 || attempts > 32 || perAttempt <= 0 {
			return fmt.Errorf("infer option failover attempts=%d per attempt=%s: want 1..32 and > 0", attempts, perAttempt)
		}
		c.attempts, c.attemptTimeout = attempts, perAttempt
		return nil
	}
}

// WithLoadChanged is called (from the query path; it must not block) when
// the host's load changes in a way other clients should hear of soon: all
// query slots taken or one free again, a queue forming or emptied. The node
// beacons its new load then.
func WithLoadChanged(f func()) Option {
	return func(c *config) error { c.loadChanged = f; return nil }
}

// Service serves /daitn/infer/1.0.0 for the node's own models and asks
// other hosts.
type Service struct {
	cfg    config
	h      host.Host
	models *models
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	slots    chan struct{}
	inflight atomic.Int64
	queued   atomic.Int64
	counters counters

	mu        sync.Mutex
	closed    bool
	streams   map[network.Stream]struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type counters struct {
	served, busy, badInput, unknown, unavailable, failed atomic.Int64
}

// Stats are the service's counters and current load.
type Stats struct {
	Served      int64 `json:"served"`        // answered with a prediction
	Busy        int64 `json:"busy"`          // answered busy
	BadInput    int64 `json:"bad_input"`     // refused for bad input or a bad request
	Unknown     int64 `json:"unknown"`       // asked for a model this host does not have
	Unavailable int64 `json:"unavailable"`   // the model's weights were missing or unloadable
	Failed      int64 `json:"failed"`        // other failures
	InFlight    int64 `json:"in_flight"`     // queries running now
	Queued      int64 `json:"queued"`        // queries waiting for a slot now
	Loaded      int   `json:"loaded"`        // models in the cache
	Concurrent  int   `json:"max_in_flight"` // the limit on queries running at once
}

// New serves /daitn/infer/1.0.0 on h for the models cat lists as the
// node's own, with weights from st. Defaults: limits of NumCPU running and
// as many queued, queue wait 1s, 8 models loaded, read/write deadlines
// 10s/5s, failover over at most 3 hosts with 5s each.
func New(ctx context.Context, h host.Host, cat Catalog, st Store, opts ...Option) (*Service, error) {
	if h == nil || cat == nil || st == nil {
		return nil, errors.New("infer: new needs a host, a catalog and a store")
	}
	n := runtime.NumCPU()
	cfg := config{
		logger: slog.Default(), concurrent: n, queue: n, queueWait: time.Second, maxLoaded: 8,
		readTimeout: 10 * time.Second, writeTimeout: 5 * time.Second,
		attempts: 3, attemptTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	s := &Service{
		cfg: cfg, h: h, models: newModels(cat, st, cfg.maxLoaded), log: cfg.logger.With("service", "infer"),
		slots: make(chan struct{}, cfg.concurrent), streams: map[network.Stream]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	h.SetStreamHandler(ProtocolID, s.handleStream)
	if cfg.taskpool != nil && cfg.servePool != "" {
		s.wg.Add(1)
		go s.poolLoop()
	}
	return s, nil
}

// Close stops serving: the protocol handler goes, open query streams are
// reset, the pool agents stop (a task they were running goes back to its
// pool), and Close returns when every handler has returned. Idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.h.RemoveStreamHandler(ProtocolID)
		s.mu.Lock()
		s.closed = true
		for st := range s.streams {
			_ = st.Reset()
		}
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// Load reports the queries running and the queries waiting for a slot, for
// the node's beacon.
func (s *Service) Load() (inFlight, queued int64) {
	return s.inflight.Load(), s.queued.Load()
}

// Stats returns the counters and the current load.
func (s *Service) Stats() Stats {
	c := &s.counters
	return Stats{
		Served: c.served.Load(), Busy: c.busy.Load(), BadInput: c.badInput.Load(), Unknown: c.unknown.Load(),
		Unavailable: c.unavailable.Load(), Failed: c.failed.Load(),
		InFlight: s.inflight.Load(), Queued: s.queued.Load(), Loaded: s.models.size(), Concurrent: s.cfg.concurrent,
	}
}

func (s *Service) loadChanged() {
	if s.cfg.loadChanged != nil {
		s.cfg.loadChanged()
	}
}

// admit takes a query slot, waiting in the bounded queue for at most the
// queue wait; false means busy. The load hook fires only on the changes
// other clients act on — all slots taken or one free again, a queue
// forming or gone — so a steadily loaded host does not beacon on every
// query.
func (s *Service) admit(ctx context.Context) (release func(), ok bool) {
	select {
	case s.slots <- struct{}{}:
		s.take()
		return s.release, true
	default:
	}
	q := s.queued.Add(1)
	if q > int64(s.cfg.queue) {
		s.queued.Add(-1)
		return nil, false
	}
	if q == 1 {
		s.loadChanged()
	}
	defer func() {
		if s.queued.Add(-1) == 0 {
			s.loadChanged()
		}
	}()
	t := time.NewTimer(s.cfg.queueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		s.take()
		return s.release, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// take counts a slot just taken; release gives it back.
func (s *Service) take() {
	if s.inflight.Add(1) == int64(s.cfg.concurrent) {
		s.loadChanged()
	}
}

func (s *Service) release() {
	<-s.slots
	if s.inflight.Add(-1) == int64(s.cfg.concurrent)-1 {
		s.loadChanged()
	}
}
