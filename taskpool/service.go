package taskpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/internal/gossip"
)

// Sentinel errors callers act on.
var (
	ErrNotFound      = errors.New("task not found")
	ErrDuplicateTask = errors.New("duplicate task id")
	ErrClosed        = errors.New("taskpool service closed")
	ErrNotOpen       = errors.New("task is not open for assignment")
	ErrNoBid         = errors.New("peer has not bid on the task")
	ErrDeclined      = errors.New("agent declined the assignment")
	ErrStale         = errors.New("stale: the task was reassigned or closed")
	ErrNotCollected  = errors.New("task has no result yet")
)

// TopicName is the gossip topic of a pool.
func TopicName(pool string) string { return "daitn/tasks/" + pool + "/1" }

type config struct {
	log          *slog.Logger
	rate         float64
	burst        int
	maxResult    int
	retry        time.Duration
	tick         time.Duration
	weights      Weights
	callTimeout  time.Duration
	lease        time.Duration
	bidWindow    time.Duration
	deadline     time.Duration
	reputation   func(peer.ID) float64
	routing      routing.PeerRouting
	maxSeen      int
	maxRep       int
	restartGrace time.Duration
	republish    time.Duration
}

// Option configures New.
type Option func(*config) error

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.log = l; return nil }
}

// WithPostingRate limits postings accepted from one peer on gossip: perSec
// sustained, burst at once. Postings over the limit are rejected, which
// lowers the sender's gossip score.
func WithPostingRate(perSec float64, burst int) Option {
	return func(c *config) error {
		if perSec <= 0 || burst < 1 {
			return fmt.Errorf("posting rate: %v/s burst %d, want > 0 and >= 1", perSec, burst)
		}
		c.rate, c.burst = perSec, burst
		return nil
	}
}

// WithMaxResult bounds the output of a result in bytes.
func WithMaxResult(n int) Option {
	return func(c *config) error {
		if n < 1024 || n > 64<<20 {
			return fmt.Errorf("max result: %d bytes, want 1KiB to 64MiB", n)
		}
		c.maxResult = n
		return nil
	}
}

// WithRetryInterval sets how often undelivered results are retried.
func WithRetryInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("retry interval: %v, want >= 1ms", d)
		}
		c.retry = d
		return nil
	}
}

// WithTick sets how often the poster checks bid windows, leases and
// deadlines.
func WithTick(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("tick: %v, want >= 1ms", d)
		}
		c.tick = d
		return nil
	}
}

// WithWeights sets the best-policy score weights.
func WithWeights(w Weights) Option {
	return func(c *config) error {
		if w.Price < 0 || w.Time < 0 || w.Load < 0 || w.Reputation < 0 {
			return fmt.Errorf("weights: %+v, want all >= 0", w)
		}
		c.weights = w
		return nil
	}
}

// WithCallTimeout bounds one request/reply exchange with a peer.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("call timeout: %v, want >= 10ms", d)
		}
		c.callTimeout = d
		return nil
	}
}

// WithDefaults sets the lease, bid window and deadline used when a TaskSpec
// leaves them zero.
func WithDefaults(lease, bidWindow, deadline time.Duration) Option {
	return func(c *config) error {
		if lease < 10*time.Millisecond || bidWindow < 0 || deadline <= 0 {
			return fmt.Errorf("defaults: lease %v bid window %v deadline %v, want lease >= 10ms, window >= 0, deadline > 0", lease, bidWindow, deadline)
		}
		c.lease, c.bidWindow, c.deadline = lease, bidWindow, deadline
		return nil
	}
}

// WithReputation replaces the poster's local reputation book in the
// best-policy score with f (values 0..1).
func WithReputation(f func(peer.ID) float64) Option {
	return func(c *config) error { c.reputation = f; return nil }
}

// WithReputationLimit bounds the poster's reputation book to n agents
// (default DefaultReputationLimit). Past it, the least recently updated
// agents are dropped from memory and store, and start again from the
// unknown agent's score when they come back.
func WithReputationLimit(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("reputation limit: %d agents, want >= 1", n)
		}
		c.maxRep = n
		return nil
	}
}

// WithRouting lets an agent find a poster that came back on new addresses
// when it retries delivering a result.
func WithRouting(r routing.PeerRouting) Option {
	return func(c *config) error { c.routing = r; return nil }
}

// WithRestartGrace sets the fresh lease a restarted poster grants to the
// holders of its assigned tasks, so results held by agents while it was down
// are not fenced out (default: each task's own lease).
func WithRestartGrace(d time.Duration) Option {
	return func(c *config) error { c.restartGrace = d; return nil }
}

// WithRepublish sets how long an open task without bids waits before the
// poster announces it again (default 5s).
func WithRepublish(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("republish: %v, want >= 10ms", d)
		}
		c.republish = d
		return nil
	}
}

// Service is one node's task pool machinery: the poster side (post,
// collect bids, assign, fence, keep results) and the agent side (postings
// feed, bids, held assignments, lease renewal, result outbox).
type Service struct {
	h     host.Host
	ps    *pubsub.PubSub
	store *guardedStore
	key   crypto.PrivKey
	self  peer.ID
	cfg   config
	log   *slog.Logger

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    bool

	// gate is held for reading by stream handlers while they answer a
	// request; gateShut, set under the write lock by Close, turns later
	// ones away.
	gate     sync.RWMutex
	gateShut bool

	mu       sync.Mutex
	pools    map[string]*poolSub
	posted   map[string]*posted
	held     map[string]*held // key poster/id
	agents   map[*Agent]struct{}
	watchers map[*watcher]struct{}
	rep      *repBook // the poster's record of agents, persisted
	feeds    map[*feed]struct{}

	vmu     sync.Mutex
	seen    map[string]seenEntry
	buckets map[peer.ID]*bucket

	outboxKick chan struct{}
	stats      Stats
}

// Stats counts what the service saw; exported for tests, metrics and
// benchmarks.
type Stats struct {
	PostingsAccepted int64 `json:"postings_accepted"`
	PostingsRejected int64 `json:"postings_rejected"`
	PostingsIgnored  int64 `json:"postings_ignored"`
	BidsReceived     int64 `json:"bids_received"`
	BidsRejected     int64 `json:"bids_rejected"`
	ResultsApplied   int64 `json:"results_applied"`
	LateResults      int64 `json:"late_results_ignored"`
	LeasesExpired    int64 `json:"leases_expired"`
	Reposts          int64 `json:"reposts"`
}

type poolSub struct {
	name   string
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	cancel context.CancelFunc
}

type seenEntry struct {
	repost   uint32
	deadline int64
	digest   string
}

// New starts the task pool service on h. The store holds its state under
// /taskpool/. Defaults: posting rate 20/s burst 400 per peer, results up to
// 1 MiB, retry every 1s, tick 20ms, DefaultWeights, call timeout 5s, lease
// 30s, bid window 500ms, deadline 10m, republish 5s, reputation book of
// DefaultReputationLimit agents.
func New(ctx context.Context, h host.Host, ps *pubsub.PubSub, store ds.Batching, opts ...Option) (*Service, error) {
	if h == nil || ps == nil || store == nil {
		return nil, errors.New("taskpool: host, pubsub and store are required")
	}
	cfg := config{
		log:         slog.Default(),
		rate:        20,
		burst:       400,
		maxResult:   DefaultMaxResult,
		retry:       time.Second,
		tick:        20 * time.Millisecond,
		weights:     DefaultWeights,
		callTimeout: 5 * time.Second,
		lease:       30 * time.Second,
		bidWindow:   500 * time.Millisecond,
		deadline:    10 * time.Minute,
		maxSeen:     100000,
		maxRep:      DefaultReputationLimit,
		republish:   5 * time.Second,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("taskpool: %w", err)
		}
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("taskpool: host has no private key in its peerstore")
	}
	s := &Service{
		h: h, ps: ps, store: &guardedStore{d: store}, key: key, self: h.ID(), cfg: cfg,
		log:        cfg.log.With("svc", "taskpool"),
		pools:      map[string]*poolSub{},
		posted:     map[string]*posted{},
		held:       map[string]*held{},
		agents:     map[*Agent]struct{}{},
		watchers:   map[*watcher]struct{}{},
		rep:        newRepBook(cfg.maxRep),
		feeds:      map[*feed]struct{}{},
		seen:       map[string]seenEntry{},
		buckets:    map[peer.ID]*bucket{},
		outboxKick: make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := s.load(ctx); err != nil {
		s.cancel()
		return nil, fmt.Errorf("taskpool: %w", err)
	}
	s.h.SetStreamHandler(ProtocolID, s.handleStream)
	s.wg.Add(2)
	go s.tickLoop()
	go s.outboxLoop()
	// Re-announce what was open before a restart: gossip is not stored.
	s.mu.Lock()
	var repost []*posted
	for _, p := range s.posted {
		if !p.State.Terminal() {
			if _, err := s.joinPoolLocked(p.Task.Pool); err != nil {
				s.log.Warn("rejoin pool", "pool", p.Task.Pool, "err", err)
			}
			if p.State == StateOpen {
				repost = append(repost, p)
			}
		}
	}
	for _, p := range repost {
		s.repostLocked(p, "restarted")
	}
	s.mu.Unlock()
	return s, nil
}

// Self is the peer this service acts as.
func (s *Service) Self() peer.ID { return s.self }

// Stats returns a snapshot of the counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vmu.Lock()
	defer s.vmu.Unlock()
	return s.stats
}

// Close stops agents, loops, stream handlers and topic subscriptions and
// waits for all of them. It is idempotent. Once it returns the service no
// longer touches the store, so the caller may close the store next.
// Persisted state stays in the store for the next New.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		agents := make([]*Agent, 0, len(s.agents))
		for a := range s.agents {
			agents = append(agents, a)
		}
		s.mu.Unlock()
		for _, a := range agents {
			a.Close()
		}
		s.h.RemoveStreamHandler(ProtocolID)
		s.gate.Lock()
		s.gateShut = true
		s.gate.Unlock()
		s.cancel()
		s.wg.Wait()
		s.mu.Lock()
		for _, p := range s.pools {
			p.cancel()
			p.sub.Cancel()
			_ = p.topic.Close()
			_ = s.ps.UnregisterTopicValidator(TopicName(p.name))
		}
		s.pools = map[string]*poolSub{}
		for w := range s.watchers {
			w.closeLocked()
		}
		for f := range s.feeds {
			close(f.ch)
		}
		s.feeds = map[*feed]struct{}{}
		s.mu.Unlock()
		s.store.close()
	})
	return nil
}

// JoinPool subscribes to a pool's topic so this node validates and relays
// its postings. Posting and running an agent join automatically.
func (s *Service) JoinPool(pool string) error {
	if err := validName("pool", pool); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.joinPoolLocked(pool)
	return err
}

func (s *Service) joinPoolLocked(pool string) (*poolSub, error) {
	if s.closed {
		return nil, ErrClosed
	}
	if p, ok := s.pools[pool]; ok {
		return p, nil
	}
	name := TopicName(pool)
	t, err := gossip.Join(s.ps, name, s.validator(pool))
	if err != nil {
		return nil, fmt.Errorf("join pool %s: %w", pool, err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		_ = t.Close()
		_ = s.ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("subscribe pool %s: %w", pool, err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ps := &poolSub{name: pool, topic: t, sub: sub, cancel: cancel}
	s.pools[pool] = ps
	s.wg.Add(1)
	go s.readPool(ctx, ps)
	return ps, nil
}

// readPool hands every validated posting to the local agents and feeds.
func (s *Service) readPool(ctx context.Context, ps *poolSub) {
	defer s.wg.Done()
	for {
		m, err := ps.sub.Next(ctx)
		if err != nil {
			return
		}
		t, ok := m.ValidatorData.(*Task)
		if !ok {
			continue
		}
		s.mu.Lock()
		var agents []*Agent
		for a := range s.agents {
			if a.cfg.Pool == ps.name {
				agents = append(agents, a)
			}
		}
		for f := range s.feeds {
			if f.pool == ps.name {
				select {
				case f.ch <- *t:
				default:
					s.log.Warn("postings feed full, dropping", "pool", ps.name, "task", t.ID)
				}
			}
		}
		s.mu.Unlock()
		for _, a := range agents {
			a.onPosting(t)
		}
	}
}

type feed struct {
	pool string
	ch   chan Task
}

// Postings streams the valid postings seen on a pool from now on, until
// ctx ends. It is what the control API serves to agents in other languages.
func (s *Service) Postings(ctx context.Context, pool string) (<-chan Task, error) {
	if err := validName("pool", pool); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.joinPoolLocked(pool); err != nil {
		return nil, err
	}
	f := &feed{pool: pool, ch: make(chan Task, 256)}
	s.feeds[f] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		if _, ok := s.feeds[f]; ok {
			delete(s.feeds, f)
			close(f.ch)
		}
		s.mu.Unlock()
	}()
	return f.ch, nil
}

// validator is the gossip validator of a pool: Reject what is provably bad
// (forged, oversized, malformed, wrong pool, equivocating, flooding), Ignore
// what is merely stale or already seen.
func (s *Service) validator(pool string) pubsub.ValidatorEx {
	return func(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		res, t := s.validatePosting(pool, m.GetFrom(), m.GetData(), time.Now())
		s.vmu.Lock()
		switch res {
		case pubsub.ValidationAccept:
			s.stats.PostingsAccepted++
			m.ValidatorData = t
		case pubsub.ValidationReject:
			s.stats.PostingsRejected++
		default:
			s.stats.PostingsIgnored++
		}
		s.vmu.Unlock()
		return res
	}
}

func (s *Service) validatePosting(pool string, from peer.ID, data []byte, now time.Time) (pubsub.ValidationResult, *Task) {
	if from != s.self && !s.allow(from, now) {
		s.log.Debug("posting flood", "from", from)
		return pubsub.ValidationReject, nil
	}
	t, err := OpenPosting(data)
	if err != nil {
		s.log.Debug("bad posting", "from", from, "err", err)
		return pubsub.ValidationReject, nil
	}
	if t.Pool != pool {
		s.log.Debug("posting for another pool", "from", from, "pool", t.Pool, "topic", pool)
		return pubsub.ValidationReject, nil
	}
	if t.Poster != from.String() {
		// Someone relays a posting as their own message: the envelope
		// signature is good, but the gossip origin must be the poster.
		return pubsub.ValidationReject, nil
	}
	if t.Deadline <= now.UnixMilli() {
		return pubsub.ValidationIgnore, nil
	}
	key := t.Poster + "/" + t.ID
	dg := postingDigest(t)
	s.vmu.Lock()
	defer s.vmu.Unlock()
	if e, ok := s.seen[key]; ok {
		if t.Repost < e.repost {
			return pubsub.ValidationIgnore, nil
		}
		if t.Repost == e.repost {
			if e.digest != dg {
				// Same id and generation, different content: the poster
				// equivocates (a duplicate task id).
				return pubsub.ValidationReject, nil
			}
			return pubsub.ValidationIgnore, nil
		}
	} else if len(s.seen) >= s.cfg.maxSeen {
		return pubsub.ValidationIgnore, nil
	}
	s.seen[key] = seenEntry{repost: t.Repost, deadline: t.Deadline, digest: dg}
	return pubsub.ValidationAccept, t
}

// postingDigest is what must not change between reposts of one task.
func postingDigest(t *Task) string {
	c := *t
	c.Repost = 0
	b, _ := encMode.Marshal(&c)
	return string(b)
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (s *Service) allow(p peer.ID, now time.Time) bool {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	b, ok := s.buckets[p]
	if !ok {
		b = &bucket{tokens: float64(s.cfg.burst), last: now}
		s.buckets[p] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * s.cfg.rate
	if b.tokens > float64(s.cfg.burst) {
		b.tokens = float64(s.cfg.burst)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (s *Service) pruneSeen(now time.Time) {
	ms := now.UnixMilli()
	s.vmu.Lock()
	defer s.vmu.Unlock()
	for k, e := range s.seen {
		if e.deadline < ms {
			delete(s.seen, k)
		}
	}
	for p, b := range s.buckets {
		if now.Sub(b.last) > time.Minute {
			delete(s.buckets, p)
		}
	}
}

func (s *Service) tickLoop() {
	defer s.wg.Done()
	tk := time.NewTicker(s.cfg.tick)
	defer tk.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tk.C:
			s.posterTick(now)
			if now.Sub(lastPrune) > 10*time.Second {
				s.pruneSeen(now)
				lastPrune = now
			}
		}
	}
}

// Watching.

// Event is a change of a posted task's state, as seen by its poster.
type Event struct {
	TaskID string    `json:"task_id"`
	State  State     `json:"state"`
	Holder string    `json:"holder,omitempty"`
	Epoch  uint64    `json:"epoch,omitempty"`
	Time   time.Time `json:"time"`
	Detail string    `json:"detail,omitempty"`
}

type watcher struct {
	id     string // "" = all tasks
	ch     chan Event
	closed bool
}

func (w *watcher) closeLocked() {
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
}

// Watch streams the state changes of a posted task (id) or of all tasks
// this node posted (id == ""), starting with the current state, until ctx
// ends or the service closes. Slow readers lose events beyond a buffer of
// 256; the last state is always available from Status.
func (s *Service) Watch(ctx context.Context, id string) (<-chan Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	w := &watcher{id: id, ch: make(chan Event, 256)}
	if id != "" {
		p, ok := s.posted[id]
		if !ok {
			return nil, fmt.Errorf("watch %s: %w", id, ErrNotFound)
		}
		w.ch <- p.event("")
	}
	s.watchers[w] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		s.mu.Lock()
		delete(s.watchers, w)
		w.closeLocked()
		s.mu.Unlock()
	}()
	return w.ch, nil
}

func (s *Service) emitLocked(ev Event) {
	for w := range s.watchers {
		if w.closed || (w.id != "" && w.id != ev.TaskID) {
			continue
		}
		select {
		case w.ch <- ev:
		default:
			s.log.Warn("watcher slow, dropping event", "task", ev.TaskID, "state", ev.State)
		}
	}
}
