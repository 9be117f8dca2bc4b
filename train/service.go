package train

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/overlay"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/transfer"
)

// Roles this service plays. Every node can be a client.
const (
	RoleData   = "data"
	RoleMPVU   = "mpvu"
	RoleClient = "client"
)

// Sentinel errors callers act on.
var (
	ErrClosed      = errors.New("train service closed")
	ErrNoJob       = errors.New("no such job")
	ErrNotAdmitted = errors.New("job not admitted")
	ErrFinished    = errors.New("job already finished")
	ErrNoRole      = errors.New("node does not have the role")
)

type config struct {
	log          *slog.Logger
	roles        []string
	testsetDir   string
	testsetLimit int
	dataDir      string
	lease        time.Duration
	roundTimeout time.Duration
	bidTimeout   time.Duration
	fetchTimeout time.Duration
	evalTimeout  time.Duration
	findTimeout  time.Duration
	routing      routing.PeerRouting
	capacity     int
	snapshot     func() *overlay.Snapshot
}

// Option configures New.
type Option func(*config) error

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l != nil {
			c.log = l
		}
		return nil
	}
}

// WithRoles sets the roles: "data" (train on own datasets), "mpvu"
// (evaluate on a held-out set); any node is a client. Other role names
// (compute, host) are ignored here.
func WithRoles(roles ...string) Option {
	return func(c *config) error { c.roles = append([]string(nil), roles...); return nil }
}

// WithTestset sets the MPVU's held-out set: a directory in the MNIST idx
// format holding t10k-* or train-* files. Empty means the real MNIST test
// set (t10k) from the GoMNIST module.
func WithTestset(dir string) Option { return func(c *config) error { c.testsetDir = dir; return nil } }

// WithTestsetLimit evaluates on the first n test samples only (0 = all).
func WithTestsetLimit(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("train: testset limit %d, want >= 0", n)
		}
		c.testsetLimit = n
		return nil
	}
}

// WithDataDir sets where AddMNISTShard writes shards (<dir>/datasets).
func WithDataDir(dir string) Option { return func(c *config) error { c.dataDir = dir; return nil } }

// WithLease sets the lease of a training-round task: a data node that stops
// renewing it for this long is taken as gone and the round goes on without
// it (default 20s).
func WithLease(d time.Duration) Option {
	return func(c *config) error {
		if d < 500*time.Millisecond {
			return fmt.Errorf("train: lease %v, want >= 500ms", d)
		}
		c.lease = d
		return nil
	}
}

// WithRoundTimeout bounds one round (default 10m).
func WithRoundTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("train: round timeout %v, want >= 1s", d)
		}
		c.roundTimeout = d
		return nil
	}
}

// WithPeerRouting lets the client find data nodes and MPVUs it is not
// connected to (the DHT).
func WithPeerRouting(r routing.PeerRouting) Option {
	return func(c *config) error { c.routing = r; return nil }
}

// WithCapacity sets how many training rounds a data node runs at once
// (default 2, so a round held for a poster that restarted does not block the next).
func WithCapacity(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("train: capacity %d, want 1..64", n)
		}
		c.capacity = n
		return nil
	}
}

// Service is one node's training service.
type Service struct {
	cfg   config
	log   *slog.Logger
	h     host.Host
	ps    *pubsub.PubSub
	store ds.Batching
	desc  *descriptors.Service
	xfer  *transfer.Service
	pool  *taskpool.Service
	key   crypto.PrivKey

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	data *dataRole
	mpvu *mpvuRole

	stats statsCounters

	mu     sync.Mutex
	closed bool
	jobs   map[string]*jobRun
	subs   map[chan Event]struct{}
}

// New starts the training service on h with the node's descriptors,
// transfer and task-pool services. State lives in store under /train/.
//
// Defaults: roles none but client, MNIST t10k as the MPVU test set, lease
// 20s, round timeout 10m, capacity 2.
func New(ctx context.Context, h host.Host, ps *pubsub.PubSub, store ds.Batching,
	desc *descriptors.Service, xfer *transfer.Service, pool *taskpool.Service, opts ...Option) (*Service, error) {
	if h == nil || store == nil || desc == nil || xfer == nil || pool == nil {
		return nil, errors.New("train: host, store, descriptors, transfer and taskpool are required")
	}
	cfg := config{
		log:          slog.Default(),
		lease:        20 * time.Second,
		roundTimeout: 10 * time.Minute,
		bidTimeout:   15 * time.Second, // the task pool re-announces an unbid posting every 5s
		fetchTimeout: 60 * time.Second,
		evalTimeout:  3 * time.Minute,
		findTimeout:  5 * time.Second,
		capacity:     2,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("train: host has no private key in its peerstore")
	}
	s := &Service{
		cfg: cfg, log: cfg.log.With("svc", "train"), h: h, ps: ps, store: store,
		desc: desc, xfer: xfer, pool: pool, key: key,
		jobs: map[string]*jobRun{}, subs: map[chan Event]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	if slices.Contains(cfg.roles, RoleMPVU) {
		m, err := s.startMPVU(ctx)
		if err != nil {
			return nil, fmt.Errorf("train: start mpvu: %w", err)
		}
		s.mpvu = m
	}
	if slices.Contains(cfg.roles, RoleData) {
		d, err := s.startData(ctx)
		if err != nil {
			return nil, fmt.Errorf("train: start data role: %w", err)
		}
		s.data = d
	}
	if err := s.loadJobs(ctx); err != nil {
		return nil, fmt.Errorf("train: load jobs: %w", err)
	}
	ok = true
	return s, nil
}

// Close stops running jobs (they resume on the next New), the data agent
// and the MPVU handler. It is idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		if s.mpvu != nil {
			s.h.RemoveStreamHandler(EvalProtocol)
		}
		if s.data != nil && s.data.agent != nil {
			_ = s.data.agent.Close()
		}
		s.wg.Wait()
		s.mu.Lock()
		for ch := range s.subs {
			close(ch)
			delete(s.subs, ch)
		}
		s.mu.Unlock()
	})
	return nil
}

// Roles returns the roles the service plays besides client.
func (s *Service) Roles() []string {
	var r []string
	if s.data != nil {
		r = append(r, RoleData)
	}
	if s.mpvu != nil {
		r = append(r, RoleMPVU)
	}
	return append(r, RoleClient)
}

// Event is a change of a job, for watchers.
type Event struct {
	Job     string       `json:"job"`
	Type    string       `json:"type"` // state, round, rejected, ignored, failed, info
	Time    time.Time    `json:"time"`
	State   JobState     `json:"state,omitempty"`
	Round   int          `json:"round,omitempty"`
	Message string       `json:"message,omitempty"`
	Record  *RoundRecord `json:"record,omitempty"`
}

// Subscribe streams events of every job until ctx ends or the service
// closes. A slow reader loses events beyond a buffer of 256; the job's
// state is always available from Job.
func (s *Service) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 256)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		s.mu.Lock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
		s.mu.Unlock()
	}()
	return ch
}

func (s *Service) emit(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Stats counts what the service did since it started.
type Stats struct {
	Rounds          int64 `json:"rounds"`           // rounds completed as client
	RoundsFailed    int64 `json:"rounds_failed"`    // rounds that produced no model
	UpdatesAccepted int64 `json:"updates_accepted"` // updates averaged
	UpdatesRejected int64 `json:"updates_rejected"` // updates refused (shape, NaN, weight)
	NodesLost       int64 `json:"nodes_lost"`       // round parts lost (lease expired, failed, no bid)
	ReportsIgnored  int64 `json:"reports_ignored"`  // evaluations not signed by the chosen MPVU (or failed)
	BytesMoved      int64 `json:"bytes_moved"`      // model down + updates up + model to the MPVU
	RoundsTrained   int64 `json:"rounds_trained"`   // rounds trained as a data node
	Evaluations     int64 `json:"evaluations"`      // models evaluated as an MPVU
}

type statsCounters struct {
	rounds, roundsFailed, accepted, rejected, lost, ignored, bytes, trained, evals atomic.Int64
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	c := &s.stats
	return Stats{
		Rounds: c.rounds.Load(), RoundsFailed: c.roundsFailed.Load(), UpdatesAccepted: c.accepted.Load(),
		UpdatesRejected: c.rejected.Load(), NodesLost: c.lost.Load(), ReportsIgnored: c.ignored.Load(),
		BytesMoved: c.bytes.Load(), RoundsTrained: c.trained.Load(), Evaluations: c.evals.Load(),
	}
}
