package descriptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/internal/gossip"
)

// Topic is the GossipSub topic descriptors are announced on.
const Topic = "daitn/descriptors/1"

// Store key prefixes (under the service's own /descriptors namespace).
var (
	ownPrefix   = ds.NewKey("/descriptors/own")
	cachePrefix = ds.NewKey("/descriptors/cache")
)

// Source says where a descriptor was learnt.
type Source string

// Sources.
const (
	SourceLocal  Source = "local"  // published by this node
	SourceGossip Source = "gossip" // delivered on daitn/descriptors/1
	SourceDHT    Source = "dht"    // fetched from the DHT by a look-up
	SourceStore  Source = "store"  // read back from the store after a restart
)

// ErrNotFound is returned by Get when no live descriptor has the id.
var ErrNotFound = errors.New("descriptor not found")

// ErrClosed is returned by calls on a closed Service.
var ErrClosed = errors.New("descriptor service closed")

// Config holds the Service settings; see New for defaults.
type Config struct {
	Logger        *slog.Logger
	TTL           time.Duration // lifetime of what we sign
	RepublishAt   float64       // fraction of TTL after which we re-sign and re-announce
	SweepInterval time.Duration // how often expired entries leave the cache
	WatchInterval time.Duration // how often watched data paths are checked
	FindTimeout   time.Duration // bound on the DHT part of Find
	// ResyncInterval is how often a random topic peer is asked for the
	// descriptors we lack (anti-entropy for missed gossip).
	ResyncInterval time.Duration
	Gossip         bool // announce on and listen to daitn/descriptors/1
	DHT            bool // put records, provide capability keys, look up
	PrivKey        crypto.PrivKey
	Now            func() time.Time
}

// Option configures New.
type Option func(*Config) error

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) error { c.Logger = l; return nil }
}

// WithTTL sets the lifetime of descriptors this node signs (1s..MaxTTL).
func WithTTL(d time.Duration) Option {
	return func(c *Config) error {
		if d < time.Second || d > MaxTTL {
			return fmt.Errorf("descriptors: ttl %v (want 1s..%v)", d, MaxTTL)
		}
		c.TTL = d
		return nil
	}
}

// WithRepublishAt sets the fraction of the TTL after which own descriptors
// are re-signed and re-announced (0.1..0.9).
func WithRepublishAt(f float64) Option {
	return func(c *Config) error {
		if !(f >= 0.1 && f <= 0.9) {
			return fmt.Errorf("descriptors: republish fraction %v (want 0.1..0.9)", f)
		}
		c.RepublishAt = f
		return nil
	}
}

// WithSweepInterval sets how often expired descriptors are dropped.
func WithSweepInterval(d time.Duration) Option {
	return func(c *Config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("descriptors: sweep interval %v (want >= 10ms)", d)
		}
		c.SweepInterval = d
		return nil
	}
}

// WithWatchInterval sets how often watched data paths are checked.
func WithWatchInterval(d time.Duration) Option {
	return func(c *Config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("descriptors: watch interval %v (want >= 10ms)", d)
		}
		c.WatchInterval = d
		return nil
	}
}

// WithFindTimeout bounds the DHT part of Find.
func WithFindTimeout(d time.Duration) Option {
	return func(c *Config) error {
		if d <= 0 {
			return fmt.Errorf("descriptors: find timeout %v (want > 0)", d)
		}
		c.FindTimeout = d
		return nil
	}
}

// WithResyncInterval sets how often a random topic peer is asked for the
// descriptors this node lacks (>= 1s).
func WithResyncInterval(d time.Duration) Option {
	return func(c *Config) error {
		if d < time.Second {
			return fmt.Errorf("descriptors: resync interval %v (want >= 1s)", d)
		}
		c.ResyncInterval = d
		return nil
	}
}

// WithGossip turns announcing on and listening to the gossip topic on or off.
func WithGossip(on bool) Option { return func(c *Config) error { c.Gossip = on; return nil } }

// WithDHT turns DHT records, capability keys and DHT look-ups on or off.
func WithDHT(on bool) Option { return func(c *Config) error { c.DHT = on; return nil } }

// WithPrivKey sets the signing key (default: the host's own key).
func WithPrivKey(k crypto.PrivKey) Option {
	return func(c *Config) error { c.PrivKey = k; return nil }
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option {
	return func(c *Config) error { c.Now = now; return nil }
}

// entry is one cached descriptor.
type entry struct {
	s        *Signed
	sources  map[Source]bool
	received time.Time
}

// ownRecord is what we persist for each descriptor we publish, so a restart
// republishes it: the template (what the owner asked for, sealed fields
// already replaced), the last signed envelope, the reveals, the watch.
type ownRecord struct {
	Template Descriptor        `cbor:"template"`
	Raw      []byte            `cbor:"raw"`
	Secrets  map[string]Reveal `cbor:"secrets,omitempty"`
	Watch    *Watch            `cbor:"watch,omitempty"`

	signed    *Signed
	lastCheck time.Time
}

// Service publishes this node's descriptors and discovers everyone else's.
type Service struct {
	cfg   Config
	log   *slog.Logger
	h     host.Host
	ps    *pubsub.PubSub
	rt    routing.Routing
	store ds.Batching
	self  peer.ID

	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	relay   func()
	ownMu   sync.Mutex // serializes changes to own descriptors (sign, persist, announce)
	mu      sync.Mutex // guards cache, own, subs, pending
	cache   map[cid.Cid]*entry
	byVer   map[cid.Cid]cid.Cid // version id -> slot
	own     map[cid.Cid]*ownRecord
	subs    map[chan Event]struct{}
	dropped int
	pending map[cid.Cid]bool
	kick    chan struct{}
	// announced is the last seq per own slot whose DHT record and
	// capability keys have been put (status for the API and tests).
	announced map[cid.Cid]uint64
	reindex   bool // the index must be re-signed even with nothing pending
	ctr       counters

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    bool
}

// New starts the descriptor service on h. ps may be nil (no gossip), rt may
// be nil (no DHT), store may be nil (in-memory; nothing survives a restart).
// The DHT behind rt must have RecordValidator registered for namespace
// "daitn" (dht.NamespacedValidator(descriptors.RecordNamespace,
// descriptors.RecordValidator{})).
//
// Defaults: TTL 24h, republish at 0.5 of the TTL, sweep every 30s, watch
// every 10s, find timeout 10s, anti-entropy resync every 5m, gossip and DHT on when ps and rt are given,
// signing key = the host's key.
func New(ctx context.Context, h host.Host, ps *pubsub.PubSub, rt routing.Routing, store ds.Batching, opts ...Option) (*Service, error) {
	if h == nil {
		return nil, errors.New("descriptors: new service: host is nil")
	}
	cfg := Config{
		Logger:         slog.Default(),
		TTL:            DefaultTTL,
		RepublishAt:    0.5,
		SweepInterval:  30 * time.Second,
		WatchInterval:  10 * time.Second,
		FindTimeout:    10 * time.Second,
		ResyncInterval: 5 * time.Minute,
		Gossip:         ps != nil,
		DHT:            rt != nil,
		Now:            time.Now,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Gossip && ps == nil {
		return nil, errors.New("descriptors: new service: gossip requested but pubsub is nil")
	}
	if cfg.DHT && rt == nil {
		return nil, errors.New("descriptors: new service: dht requested but routing is nil")
	}
	if cfg.PrivKey == nil {
		cfg.PrivKey = h.Peerstore().PrivKey(h.ID())
		if cfg.PrivKey == nil {
			return nil, fmt.Errorf("descriptors: new service: no private key for host %s", h.ID())
		}
	}
	self, err := peer.IDFromPrivateKey(cfg.PrivKey)
	if err != nil {
		return nil, fmt.Errorf("descriptors: new service: %w", err)
	}
	if store == nil {
		store = dssync.MutexWrap(ds.NewMapDatastore())
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, log: cfg.Logger.With("service", "descriptors"),
		h: h, ps: ps, rt: rt, store: store, self: self,
		cache: map[cid.Cid]*entry{}, byVer: map[cid.Cid]cid.Cid{},
		own: map[cid.Cid]*ownRecord{}, subs: map[chan Event]struct{}{},
		pending: map[cid.Cid]bool{}, kick: make(chan struct{}, 1), announced: map[cid.Cid]uint64{},
		ctx: sctx, cancel: cancel,
	}
	if err := s.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	if cfg.Gossip {
		t, err := gossip.Join(ps, Topic, s.validateMsg)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("descriptors: new service: %w", err)
		}
		sub, err := t.Subscribe()
		if err != nil {
			_ = t.Close()
			_ = ps.UnregisterTopicValidator(Topic)
			cancel()
			return nil, fmt.Errorf("descriptors: subscribe %s: %w", Topic, err)
		}
		s.topic, s.sub = t, sub
		s.h.SetStreamHandler(SyncProtocol, s.handleSync)
		evh, err := t.EventHandler()
		if err != nil {
			sub.Cancel()
			_ = t.Close()
			_ = ps.UnregisterTopicValidator(Topic)
			s.h.RemoveStreamHandler(SyncProtocol)
			cancel()
			return nil, fmt.Errorf("descriptors: topic events: %w", err)
		}
		s.wg.Add(2)
		go s.receiveLoop()
		go s.syncLoop(evh)
	}
	if cfg.DHT {
		s.wg.Add(1)
		go s.announceLoop()
	}
	s.wg.Add(1)
	go s.maintainLoop()
	// Announce what we already had (restart): re-sign anything due.
	s.republishDue(true)
	return s, nil
}

// Close stops the service. It is idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		if s.topic != nil {
			s.h.RemoveStreamHandler(SyncProtocol)
		}
		s.cancel()
		if s.sub != nil {
			s.sub.Cancel()
		}
		s.wg.Wait()
		if s.topic != nil {
			_ = s.topic.Close()
			_ = s.ps.UnregisterTopicValidator(Topic)
		}
		s.mu.Lock()
		s.closed = true
		for ch := range s.subs {
			close(ch)
			delete(s.subs, ch)
		}
		s.mu.Unlock()
	})
	return nil
}

// Self is the peer ID descriptors are signed as.
func (s *Service) Self() peer.ID { return s.self }

func (s *Service) now() time.Time { return s.cfg.Now() }

// load reads own records and the cache from the store.
func (s *Service) load(ctx context.Context) error {
	res, err := s.store.Query(ctx, dsq.Query{Prefix: ownPrefix.String()})
	if err != nil {
		return fmt.Errorf("descriptors: load own descriptors: %w", err)
	}
	own, err := res.Rest()
	if err != nil {
		return fmt.Errorf("descriptors: load own descriptors: %w", err)
	}
	for _, e := range own {
		var r ownRecord
		if err := decMode.Unmarshal(e.Value, &r); err != nil {
			s.log.Warn("skip unreadable own descriptor", "key", e.Key, "err", err)
			continue
		}
		sd, err := OpenUnexpired(r.Raw)
		if err != nil {
			s.log.Warn("skip invalid own descriptor", "key", e.Key, "err", err)
			continue
		}
		r.signed = sd
		s.own[sd.Slot] = &r
		s.putCacheLocked(sd, SourceLocal)
	}
	res, err = s.store.Query(ctx, dsq.Query{Prefix: cachePrefix.String()})
	if err != nil {
		return fmt.Errorf("descriptors: load cache: %w", err)
	}
	cached, err := res.Rest()
	if err != nil {
		return fmt.Errorf("descriptors: load cache: %w", err)
	}
	now := s.now()
	for _, e := range cached {
		sd, err := OpenAt(e.Value, now)
		if err != nil {
			_ = s.store.Delete(ctx, ds.NewKey(e.Key))
			continue
		}
		if cur := s.cache[sd.Slot]; cur == nil || sd.Newer(cur.s) {
			s.putCacheLocked(sd, SourceStore)
		}
	}
	return nil
}

func (s *Service) putCacheLocked(sd *Signed, src Source) {
	if old := s.cache[sd.Slot]; old != nil {
		delete(s.byVer, old.s.ID)
	}
	s.cache[sd.Slot] = &entry{s: sd, sources: map[Source]bool{src: true}, received: s.now()}
	s.byVer[sd.ID] = sd.Slot
}

// ingest adds a verified descriptor to the cache if it is newer than what we
// have for its slot. It returns whether anything changed.
func (s *Service) ingest(sd *Signed, src Source) bool {
	if sd.Expired(s.now()) {
		return false
	}
	s.mu.Lock()
	cur := s.cache[sd.Slot]
	if cur != nil && !sd.Newer(cur.s) {
		if cur.s.ID == sd.ID {
			cur.sources[src] = true
		}
		s.mu.Unlock()
		return false
	}
	s.putCacheLocked(sd, src)
	ev := Event{Type: EventAdded, Desc: sd, Source: src}
	if cur != nil {
		ev.Type, ev.Prev = EventUpdated, cur.s
	}
	s.emitLocked(ev)
	s.mu.Unlock()
	if src != SourceLocal {
		// Best effort: the cache is a convenience; own descriptors are
		// persisted separately and synchronously.
		if err := s.store.Put(s.ctx, cachePrefix.ChildString(sd.Slot.String()), sd.Raw); err != nil {
			s.log.Warn("persist heard descriptor", "slot", sd.Slot, "err", err)
		}
	}
	return true
}

// validateMsg is the gossip validator: Reject what is provably bad (forged,
// tampered, oversized, wrongly typed), Ignore what is stale or a duplicate.
func (s *Service) validateMsg(ctx context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	res := s.verdict(from, m)
	switch res {
	case pubsub.ValidationReject:
		s.ctr.rejected.Add(1)
	case pubsub.ValidationIgnore:
		s.ctr.ignored.Add(1)
	}
	return res
}

func (s *Service) verdict(from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if len(m.Data) > MaxEnvelopeSize {
		return pubsub.ValidationReject
	}
	sd, err := OpenAt(m.Data, s.now())
	if err != nil {
		if errors.Is(err, ErrExpired) {
			return pubsub.ValidationIgnore
		}
		s.log.Debug("reject gossiped descriptor", "from", from, "err", err)
		return pubsub.ValidationReject
	}
	if from == s.h.ID() {
		// Our own publish (a new version, a republish or a re-announce).
		m.ValidatorData = sd
		return pubsub.ValidationAccept
	}
	s.mu.Lock()
	cur := s.cache[sd.Slot]
	s.mu.Unlock()
	if cur != nil && !sd.Newer(cur.s) {
		return pubsub.ValidationIgnore
	}
	m.ValidatorData = sd
	return pubsub.ValidationAccept
}

func (s *Service) receiveLoop() {
	defer s.wg.Done()
	for {
		m, err := s.sub.Next(s.ctx)
		if err != nil {
			return
		}
		sd, ok := m.ValidatorData.(*Signed)
		if !ok {
			continue
		}
		if s.ingest(sd, SourceGossip) {
			s.ctr.accepted.Add(1)
		}
	}
}

// PublishOption configures one Publish.
type PublishOption func(*publishConfig) error

type publishConfig struct {
	seal  []string
	watch *Watch
}

// WithSealed publishes the named fields only as commitments (see
// SealableFields); the reveals are kept and handed out with Reveal.
func WithSealed(fields ...string) PublishOption {
	return func(p *publishConfig) error { p.seal = append(p.seal, fields...); return nil }
}

// Publish signs d as the next version of its slot (owner = this node, kind,
// name), stores it durably, announces it on gossip and queues the DHT
// record, index and capability keys. Seq is chosen by the service (the
// larger of the Unix time in seconds and one more than the last version)
// unless d.Seq is higher; Issued and Expires are set
// from the configured TTL. d is not modified.
func (s *Service) Publish(ctx context.Context, d *Descriptor, opts ...PublishOption) (*Signed, error) {
	var pc publishConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&pc); err != nil {
			return nil, err
		}
	}
	return s.publish(ctx, d, pc)
}

func (s *Service) publish(ctx context.Context, d *Descriptor, pc publishConfig) (*Signed, error) {
	if d == nil {
		return nil, fmt.Errorf("publish descriptor: %w", &FieldError{Field: "descriptor", Want: "a descriptor", Err: ErrMissingField})
	}
	if err := s.ctx.Err(); err != nil {
		return nil, ErrClosed
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	tmpl, err := cloneDescriptor(d)
	if err != nil {
		return nil, fmt.Errorf("publish descriptor: %w", err)
	}
	if tmpl.Owner != "" && tmpl.Owner != s.self.String() {
		return nil, fmt.Errorf("publish %s %q: %w: owner %q is not this node %s", tmpl.Kind, tmpl.Name, ErrOwnerMismatch, tmpl.Owner, s.self)
	}
	tmpl.Owner = s.self.String()
	var secrets map[string]Reveal
	if len(pc.seal) > 0 {
		if tmpl, secrets, err = SealFields(tmpl, pc.seal...); err != nil {
			return nil, fmt.Errorf("publish %s %q: %w", d.Kind, d.Name, err)
		}
	}
	slot := SlotID(s.self, tmpl.Kind, tmpl.Name)
	s.mu.Lock()
	prev := s.own[slot]
	s.mu.Unlock()
	rec := &ownRecord{Template: *tmpl, Secrets: secrets, Watch: pc.watch}
	if prev != nil {
		if rec.Watch == nil {
			rec.Watch = prev.Watch
		}
		if len(pc.seal) == 0 && len(tmpl.Sealed) == 0 {
			rec.Secrets = nil
		}
	}
	return s.signAndAnnounce(ctx, rec, prev)
}

// signAndAnnounce signs rec.Template as the version after prev, persists it,
// caches it and announces it. Caller holds ownMu.
func (s *Service) signAndAnnounce(ctx context.Context, rec *ownRecord, prev *ownRecord) (*Signed, error) {
	t := rec.Template
	now := s.now()
	// The sequence is at least the Unix time in seconds: if the store is
	// lost (but the identity kept), the next version still outranks what
	// the DHT and other peers hold, instead of being ignored as a replay
	// until the old one expires.
	seq := max(t.Seq, uint64(max(now.Unix(), 1)))
	if prev != nil && prev.signed != nil && prev.signed.Seq >= seq {
		seq = prev.signed.Seq + 1
	}
	t.Seq = seq
	t.Issued = now
	t.Expires = now.Add(s.cfg.TTL)
	sd, err := SignAt(s.cfg.PrivKey, &t, now)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if secrets := rec.Secrets; len(secrets) > 0 {
		for f, r := range secrets {
			r.Slot = sd.Slot.String()
			secrets[f] = r
		}
	}
	rec.Template.Seq = 0
	rec.Raw = sd.Raw
	rec.signed = sd
	if prev != nil {
		rec.lastCheck = prev.lastCheck
	}
	b, err := encMode.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("publish %s %q: encode for store: %w", sd.Kind, sd.Name, err)
	}
	// Durable before anyone hears of it: a restart republishes this version.
	if err := s.store.Put(ctx, ownPrefix.ChildString(sd.Slot.String()), b); err != nil {
		return nil, fmt.Errorf("publish %s %q: persist: %w", sd.Kind, sd.Name, err)
	}
	s.mu.Lock()
	s.own[sd.Slot] = rec
	s.mu.Unlock()
	s.ingest(sd, SourceLocal)
	s.announce(ctx, sd)
	return sd, nil
}

// announce sends sd on gossip now and queues the DHT work.
func (s *Service) announce(ctx context.Context, sd *Signed) {
	if s.cfg.Gossip {
		if err := s.topic.Publish(ctx, sd.Raw); err != nil {
			s.log.Warn("gossip descriptor", "slot", sd.Slot, "err", err)
		}
	}
	if s.cfg.DHT {
		s.mu.Lock()
		s.pending[sd.Slot] = true
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// announceLoop does the slow DHT work off the caller's path: put each
// pending slot's record, then the index, then provide capability keys.
func (s *Service) announceLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		}
		s.mu.Lock()
		var todo []*Signed
		for slot := range s.pending {
			if r := s.own[slot]; r != nil && r.signed != nil {
				todo = append(todo, r.signed)
			}
			delete(s.pending, slot)
		}
		reindex := s.reindex
		s.reindex = false
		s.mu.Unlock()
		if len(todo) == 0 {
			if reindex {
				s.putIndex()
			}
			continue
		}
		s.putIndex()
		for _, sd := range todo {
			s.putDHT(sd)
			s.mu.Lock()
			s.announced[sd.Slot] = sd.Seq
			s.mu.Unlock()
		}
		s.emit(Event{Type: EventAnnounced, Source: SourceDHT, Desc: todo[len(todo)-1]})
	}
}

func (s *Service) putDHT(sd *Signed) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	s.ctr.puts.Add(1)
	if err := s.rt.PutValue(ctx, sd.Key(), sd.Raw); err != nil {
		s.ctr.putErrors.Add(1)
		s.log.Debug("put descriptor record", "key", sd.Key(), "err", err)
	}
	var wg sync.WaitGroup
	for _, tag := range sd.Tags() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.rt.Provide(ctx, CapabilityKey(tag), true); err != nil {
				s.log.Debug("provide capability", "tag", tag, "err", err)
			}
		}()
	}
	wg.Wait()
}

func (s *Service) putIndex() {
	s.mu.Lock()
	var live []*Signed
	for _, r := range s.own {
		if r.signed != nil {
			live = append(live, r.signed)
		}
	}
	s.mu.Unlock()
	sort.Slice(live, func(i, j int) bool { return live[i].Slot.KeyString() < live[j].Slot.KeyString() })
	if len(live) > MaxIndexEntries {
		live = live[:MaxIndexEntries]
	}
	ix, err := SignIndex(s.cfg.PrivKey, live, s.now(), s.cfg.TTL)
	if err != nil {
		s.log.Warn("sign index", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	s.ctr.puts.Add(1)
	if err := s.rt.PutValue(ctx, ix.Key(), ix.Raw); err != nil {
		s.ctr.putErrors.Add(1)
		s.log.Debug("put index record", "key", ix.Key(), "err", err)
	}
}

// maintainLoop sweeps expired entries, republishes own descriptors before
// they expire and checks watched data paths.
func (s *Service) maintainLoop() {
	defer s.wg.Done()
	tick := min(s.cfg.SweepInterval, s.cfg.WatchInterval, s.cfg.TTL/10)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastSweep := s.now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		if now.Sub(lastSweep) >= s.cfg.SweepInterval {
			s.sweep(now)
			lastSweep = now
		}
		s.republishDue(false)
		s.checkWatches(now)
	}
}

// sweep drops expired descriptors from the cache.
func (s *Service) sweep(now time.Time) {
	s.mu.Lock()
	var gone []*Signed
	for slot, e := range s.cache {
		if e.s.Expired(now) {
			gone = append(gone, e.s)
			delete(s.cache, slot)
			delete(s.byVer, e.s.ID)
			s.emitLocked(Event{Type: EventExpired, Desc: e.s})
		}
	}
	s.mu.Unlock()
	for _, sd := range gone {
		_ = s.store.Delete(s.ctx, cachePrefix.ChildString(sd.Slot.String()))
	}
}

// republishDue re-signs own descriptors past the republish point (or
// already expired); with all set it also re-announces the rest (start-up).
func (s *Service) republishDue(all bool) {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	now := s.now()
	s.mu.Lock()
	var due, again []*ownRecord
	for _, r := range s.own {
		if r.signed == nil {
			continue
		}
		life := r.signed.Expires.Sub(r.signed.Issued)
		if !now.Before(r.signed.Issued.Add(time.Duration(float64(life) * s.cfg.RepublishAt))) {
			due = append(due, r)
		} else if all {
			again = append(again, r)
		}
	}
	s.mu.Unlock()
	for _, r := range due {
		nr := *r
		if _, err := s.signAndAnnounce(s.ctx, &nr, r); err != nil {
			s.log.Warn("republish descriptor", "slot", r.signed.Slot, "err", err)
		}
	}
	for _, r := range again {
		s.announce(s.ctx, r.signed)
	}
}

// Own returns the live descriptors this node publishes.
func (s *Service) Own() []*Signed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Signed
	for _, r := range s.own {
		if r.signed != nil {
			out = append(out, r.signed)
		}
	}
	sortSigned(out)
	return out
}

// Snapshot returns every live descriptor in the cache (own and heard).
// Subscribers call it first, then apply events.
func (s *Service) Snapshot() []*Signed {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Signed, 0, len(s.cache))
	for _, e := range s.cache {
		if !e.s.Expired(now) {
			out = append(out, e.s)
		}
	}
	sortSigned(out)
	return out
}

func sortSigned(v []*Signed) {
	sort.Slice(v, func(i, j int) bool {
		if v[i].Kind != v[j].Kind {
			return v[i].Kind < v[j].Kind
		}
		if v[i].Owner != v[j].Owner {
			return v[i].Owner < v[j].Owner
		}
		return v[i].Name < v[j].Name
	})
}

// Get returns the live descriptor whose slot id or version id is id, from
// the cache or, failing that, from the DHT (slot ids only).
func (s *Service) Get(ctx context.Context, id cid.Cid) (*Signed, error) {
	now := s.now()
	s.mu.Lock()
	slot := id
	if sl, ok := s.byVer[id]; ok {
		slot = sl
	}
	e := s.cache[slot]
	s.mu.Unlock()
	if e != nil && !e.s.Expired(now) {
		return e.s, nil
	}
	if s.cfg.DHT {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.FindTimeout)
		defer cancel()
		b, err := s.getBest(ctx, RecordKey(id))
		if err == nil {
			sd, err := OpenAt(b, s.now())
			if err == nil {
				s.ingest(sd, SourceDHT)
				return sd, nil
			}
		}
	}
	return nil, fmt.Errorf("get descriptor %s: %w", id, ErrNotFound)
}

// Reveal returns the reveal of a sealed field of one of our descriptors,
// to be handed to a chosen peer.
func (s *Service) Reveal(slot cid.Cid, field string) (Reveal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.own[slot]
	if r == nil {
		return Reveal{}, fmt.Errorf("reveal %s of %s: %w: not one of our descriptors", field, slot, ErrNotFound)
	}
	rv, ok := r.Secrets[field]
	if !ok {
		return Reveal{}, fmt.Errorf("reveal %s of %s: %w", field, slot, &FieldError{Field: "field", Value: field, Want: "a sealed field of this descriptor", Err: ErrInvalidField})
	}
	rv.Slot = slot.String()
	return rv, nil
}

// Remove stops publishing one of our descriptors: it is no longer
// republished, leaves our index (so DHT look-ups stop finding it) and our
// cache. Copies other peers hold stay until they expire — a signed
// statement cannot be recalled, only left to lapse.
func (s *Service) Remove(ctx context.Context, slot cid.Cid) error {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	s.mu.Lock()
	r := s.own[slot]
	s.mu.Unlock()
	if r == nil {
		return fmt.Errorf("remove descriptor %s: %w: not one of ours", slot, ErrNotFound)
	}
	if err := s.store.Delete(ctx, ownPrefix.ChildString(slot.String())); err != nil {
		return fmt.Errorf("remove descriptor %s: %w", slot, err)
	}
	s.mu.Lock()
	delete(s.own, slot)
	if e := s.cache[slot]; e != nil {
		delete(s.cache, slot)
		delete(s.byVer, e.s.ID)
		s.emitLocked(Event{Type: EventRemoved, Desc: e.s, Source: SourceLocal})
	}
	s.mu.Unlock()
	if s.cfg.DHT {
		// An empty pending batch still re-signs the index without the slot.
		s.mu.Lock()
		s.reindex = true
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}
