package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/gossip"
)

// ItemEvent adds or replaces an item (Item set) or removes one (RemovedID).
type ItemEvent struct {
	Item      *Item
	RemovedID string
}

// ItemSource feeds descriptor content into the map. The node adapts the
// descriptor service to it; tests feed items directly with AddItem.
type ItemSource interface {
	// Items returns a channel of changes, starting with everything known,
	// closed when ctx ends.
	Items(ctx context.Context) (<-chan ItemEvent, error)
}

// Event types published to subscribers.
const (
	EventPeerJoined  = "peer-joined"
	EventPeerChanged = "peer-changed"
	EventPeerLeft    = "peer-left"
	EventItemAdded   = "item-added"
	EventItemChanged = "item-changed"
	EventItemRemoved = "item-removed"
)

// Event is one change of the map.
type Event struct {
	Type    string    `json:"type"`
	ID      string    `json:"id"`
	Kind    string    `json:"kind,omitempty"`
	Version uint64    `json:"version"`
	At      time.Time `json:"at"`
}

// Stats counts beacon traffic of this node (payload bytes as gossiped, one
// count per distinct message; the wire carries mesh duplicates on top).
type Stats struct {
	BeaconsSent     uint64 `json:"beacons_sent"`
	BytesSent       uint64 `json:"bytes_sent"`
	BeaconsReceived uint64 `json:"beacons_received"`
	BytesReceived   uint64 `json:"bytes_received"`
	Rejected        uint64 `json:"rejected"`
	Ignored         uint64 `json:"ignored"`
	EventsDropped   uint64 `json:"events_dropped"`
}

// Service keeps this node's map and sends its beacons.
type Service struct {
	cfg   config
	h     host.Host
	ps    *pubsub.PubSub
	key   crypto.PrivKey
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	log   *slog.Logger

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	kick      chan struct{}

	mu        sync.Mutex
	peers     map[peer.ID]*PeerInfo
	items     map[string]*Item
	myRTT     map[peer.ID]time.Duration
	probedAt  map[peer.ID]time.Time
	version   uint64
	snap      *Snapshot
	roles     []string
	reach     string
	seq       uint64
	lastIssue int64
	subs      map[int]chan Event
	nextSub   int

	vmu     sync.Mutex
	senders map[peer.ID]*senderState

	sent, sentBytes, recv, recvBytes, rejected, ignored, dropped atomic.Uint64
}

type senderState struct {
	lastIssued int64
	staleSince time.Time
	stale      int
}

// An honest sender's stale beacons come from reordering, a few per window
// at most; more is a flood.
const (
	staleWindow       = time.Minute
	maxStalePerWindow = 30
)

// snapshotMaxStale is how long an unchanged snapshot is handed out again
// before a fresh one (with current ages) is built.
const snapshotMaxStale = time.Second

// New joins the beacon topic, registers the probe handler and starts
// beaconing. Defaults: interval 10s, beacon lifetime 3 intervals, change
// beacons at most once per second, flood gap 0.5s, 8 probes per interval,
// topic budget 100 beacons/s federation-wide, 20000 peers at most.
func New(ctx context.Context, h host.Host, ps *pubsub.PubSub, opts ...Option) (*Service, error) {
	if h == nil || ps == nil {
		return nil, errors.New("overlay: host and pubsub are required")
	}
	cfg := defaults()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.probeInterval == 0 {
		cfg.probeInterval = cfg.interval
	}
	if cfg.minInterval > cfg.interval {
		return nil, fmt.Errorf("overlay options: min interval %s exceeds interval %s", cfg.minInterval, cfg.interval)
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, fmt.Errorf("overlay: no private key for host %s in its peerstore", h.ID())
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, h: h, ps: ps, key: key, log: cfg.logger.With("svc", "overlay"),
		ctx: sctx, cancel: cancel, kick: make(chan struct{}, 1),
		peers: map[peer.ID]*PeerInfo{}, items: map[string]*Item{},
		myRTT: map[peer.ID]time.Duration{}, probedAt: map[peer.ID]time.Time{},
		roles: cfg.roles, reach: ReachUnknown, subs: map[int]chan Event{},
		senders: map[peer.ID]*senderState{},
		seq:     uint64(time.Now().UnixMilli()),
	}
	// Inline: the check is cheap next to GossipSub's own signature check, and
	// a goroutine per message only adds scheduling under load.
	t, err := gossip.Join(ps, BeaconTopic, s.validate, pubsub.WithValidatorInline(true))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	// A large buffer: GossipSub drops messages for a subscriber that falls
	// 32 behind, and a burst of beacons after a partition heals is normal.
	sub, err := t.Subscribe(pubsub.WithBufferSize(1024))
	if err != nil {
		_ = t.Close()
		_ = ps.UnregisterTopicValidator(BeaconTopic)
		cancel()
		return nil, fmt.Errorf("overlay: subscribe %s: %w", BeaconTopic, err)
	}
	s.topic, s.sub = t, sub
	joins, err := t.EventHandler()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("overlay: topic events: %w", err)
	}
	reachSub, err := h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		joins.Cancel()
		s.Close()
		return nil, fmt.Errorf("overlay: subscribe reachability events: %w", err)
	}
	h.SetStreamHandler(ProbeProtocol, s.handleProbe)

	var items <-chan ItemEvent
	if cfg.source != nil {
		items, err = cfg.source.Items(sctx)
		if err != nil {
			_ = reachSub.Close()
			joins.Cancel()
			s.Close()
			return nil, fmt.Errorf("overlay: item source: %w", err)
		}
	}
	s.run(s.recvLoop)
	s.run(s.publishLoop)
	s.run(s.probeLoop)
	s.run(s.sweepLoop)
	s.run(func() { s.reachLoop(reachSub) })
	s.run(func() { s.joinLoop(joins) })
	if items != nil {
		s.run(func() { s.itemLoop(items) })
	}
	return s, nil
}

func (s *Service) run(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close stops beaconing and probing and leaves the topic. Idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.h.RemoveStreamHandler(ProbeProtocol)
		s.wg.Wait()
		if s.sub != nil {
			s.sub.Cancel()
		}
		if s.topic != nil {
			_ = s.topic.Close()
		}
		_ = s.ps.UnregisterTopicValidator(BeaconTopic)
		s.mu.Lock()
		for id, ch := range s.subs {
			close(ch)
			delete(s.subs, id)
		}
		s.mu.Unlock()
	})
	return nil
}

// Stats returns this node's beacon traffic counters.
func (s *Service) Stats() Stats {
	return Stats{
		BeaconsSent: s.sent.Load(), BytesSent: s.sentBytes.Load(),
		BeaconsReceived: s.recv.Load(), BytesReceived: s.recvBytes.Load(),
		Rejected: s.rejected.Load(), Ignored: s.ignored.Load(), EventsDropped: s.dropped.Load(),
	}
}

// Snapshot returns a consistent, immutable view of the map.
func (s *Service) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.snap != nil && s.snap.version == s.version && now.Sub(s.snap.taken) < snapshotMaxStale {
		return s.snap
	}
	sn := &Snapshot{taken: now, self: s.h.ID(), version: s.version,
		peers: make(map[peer.ID]*PeerInfo, len(s.peers)),
		items: make(map[string]*Item, len(s.items)),
		myRTT: make(map[peer.ID]time.Duration, len(s.myRTT))}
	for k, v := range s.peers {
		sn.peers[k] = v
	}
	for k, v := range s.items {
		sn.items[k] = v
	}
	for k, v := range s.myRTT {
		sn.myRTT[k] = v
	}
	s.snap = sn
	return sn
}

// Subscribe returns change events until ctx ends or the service closes. A
// subscriber that does not keep up loses events (counted in Stats) rather
// than slowing the map; it can always take a fresh Snapshot.
func (s *Service) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 256)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	id := s.nextSub
	s.nextSub++
	s.subs[id] = ch
	s.mu.Unlock()
	// Close closes every remaining subscription; this only handles a
	// subscriber that leaves early.
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		if c, ok := s.subs[id]; ok {
			close(c)
			delete(s.subs, id)
		}
		s.mu.Unlock()
	})
	return ch
}

// emit must be called with s.mu held.
func (s *Service) emit(typ, id, kind string) {
	ev := Event{Type: typ, ID: id, Kind: kind, Version: s.version, At: time.Now()}
	for _, ch := range s.subs {
		select {
		case ch <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}

// SetRoles changes the announced roles and sends a beacon soon.
func (s *Service) SetRoles(roles ...string) error {
	if err := checkRoles(roles); err != nil {
		return fmt.Errorf("set roles: %w", err)
	}
	s.mu.Lock()
	s.roles = append([]string(nil), roles...)
	s.mu.Unlock()
	s.Touch()
	return nil
}

// Touch asks for a beacon soon (rate-limited to one per min interval); call
// it when load or capacity changed noticeably.
func (s *Service) Touch() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// AddItem adds or replaces an item of the map. An item of this node's own
// lists its id in the next beacon.
func (s *Service) AddItem(it *Item) error {
	if err := it.check(); err != nil {
		return fmt.Errorf("add item: %w", err)
	}
	cp := *it
	cp.Seen = time.Now()
	s.mu.Lock()
	old, had := s.items[it.ID]
	s.items[it.ID] = &cp
	s.version++
	if had {
		s.emit(EventItemChanged, it.ID, string(it.Kind))
	} else {
		s.emit(EventItemAdded, it.ID, string(it.Kind))
	}
	s.mu.Unlock()
	if it.Owner == s.h.ID() && (!had || old.ID != it.ID) {
		s.Touch()
	}
	return nil
}

// RemoveItem removes an item; unknown ids are ignored.
func (s *Service) RemoveItem(id string) {
	s.mu.Lock()
	it, ok := s.items[id]
	if ok {
		delete(s.items, id)
		s.version++
		s.emit(EventItemRemoved, id, string(it.Kind))
	}
	s.mu.Unlock()
	if ok && it.Owner == s.h.ID() {
		s.Touch()
	}
}

// validate is the topic validator: Reject for forged, oversized, malformed,
// impossible or flooding beacons (costing the sender score); Ignore for
// expired, stale and duplicate ones.
func (s *Service) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	now := time.Now()
	sb, err := OpenBeacon(msg.Data, now)
	if err != nil {
		if errors.Is(err, ErrExpired) {
			s.ignored.Add(1)
			s.log.Debug("ignore beacon", "from", msg.GetFrom(), "err", err)
			return pubsub.ValidationIgnore
		}
		s.rejected.Add(1)
		s.log.Debug("reject beacon", "from", msg.GetFrom(), "err", err)
		return pubsub.ValidationReject
	}
	if sb.From != msg.GetFrom() {
		s.rejected.Add(1)
		s.log.Debug("reject beacon", "from", msg.GetFrom(), "err", "signed by another peer", "signer", sb.From)
		return pubsub.ValidationReject
	}
	s.vmu.Lock()
	defer s.vmu.Unlock()
	st := s.senders[sb.From]
	if st == nil {
		st = &senderState{}
		s.senders[sb.From] = st
	}
	// Flood control rests on content, not arrival times: under load GossipSub
	// delivers an honest sender's beacons in bursts, and a rule on arrival
	// would penalise the honest peers relaying them. Issued times must grow
	// by at least the flood gap and may not run ahead of the clock, so a
	// sender gets at most one accepted beacon per gap however it times them.
	if sb.Beacon.Issued <= st.lastIssued {
		// Reordering makes an honest sender's older beacon arrive late now
		// and then; a stream of them is a flood hiding behind "stale".
		if now.Sub(st.staleSince) > staleWindow {
			st.staleSince, st.stale = now, 0
		}
		st.stale++
		if st.stale > maxStalePerWindow {
			s.rejected.Add(1)
			s.log.Debug("reject beacon", "from", sb.From, "err", "flood: too many stale beacons")
			return pubsub.ValidationReject
		}
		s.ignored.Add(1)
		s.log.Debug("ignore beacon", "from", sb.From, "err", "not newer than the last one", "issued", sb.Beacon.Issued, "last", st.lastIssued)
		return pubsub.ValidationIgnore
	}
	if st.lastIssued != 0 && time.Duration(sb.Beacon.Issued-st.lastIssued)*time.Millisecond < s.cfg.floodGap {
		s.rejected.Add(1)
		s.log.Debug("reject beacon", "from", sb.From, "err", "flood: issued too soon after the previous one")
		return pubsub.ValidationReject
	}
	st.lastIssued = sb.Beacon.Issued
	msg.ValidatorData = sb
	return pubsub.ValidationAccept
}

func (s *Service) recvLoop() {
	for {
		msg, err := s.sub.Next(s.ctx)
		if err != nil {
			return
		}
		sb, ok := msg.ValidatorData.(*SignedBeacon)
		if !ok {
			continue
		}
		s.recv.Add(1)
		s.recvBytes.Add(uint64(len(msg.Data)))
		s.apply(sb, time.Now())
	}
}

func (s *Service) apply(sb *SignedBeacon, now time.Time) {
	b := &sb.Beacon
	pi := &PeerInfo{
		ID: sb.From, Self: sb.From == s.h.ID(), Roles: b.Roles, Load: b.Load, Free: b.Free,
		Reach: b.Reach, Relayed: b.Relayed, Descriptors: b.Descriptors,
		DescriptorCount: max(b.DescriptorCount, int64(len(b.Descriptors))),
		Seq:             b.Seq, Issued: time.UnixMilli(b.Issued), Expires: time.UnixMilli(b.Expires),
		Seen: now, BeaconBytes: len(sb.Raw),
	}
	if pi.Reach == "" {
		pi.Reach = ReachUnknown
	}
	if len(b.RTTs) > 0 {
		pi.RTTs = make(map[peer.ID]time.Duration, len(b.RTTs))
		for _, r := range b.RTTs {
			id, err := peer.IDFromBytes(r.Peer)
			if err == nil {
				pi.RTTs[id] = time.Duration(r.Micros) * time.Microsecond
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.peers[sb.From]
	if old != nil && (b.Issued < old.Issued.UnixMilli() || b.Issued == old.Issued.UnixMilli() && b.Seq <= old.Seq) {
		return
	}
	if old == nil && len(s.peers) >= s.cfg.maxPeers {
		s.evictOldestLocked()
	}
	s.peers[sb.From] = pi
	s.version++
	switch {
	case old == nil:
		s.emit(EventPeerJoined, sb.From.String(), "peer")
	case changed(old, pi):
		s.emit(EventPeerChanged, sb.From.String(), "peer")
	}
}

func (s *Service) evictOldestLocked() {
	var oldest *PeerInfo
	for _, p := range s.peers {
		if p.Self {
			continue
		}
		if oldest == nil || p.Seen.Before(oldest.Seen) {
			oldest = p
		}
	}
	if oldest != nil {
		delete(s.peers, oldest.ID)
		s.emit(EventPeerLeft, oldest.ID.String(), "peer")
	}
}

func changed(a, b *PeerInfo) bool {
	if a.Load != b.Load || a.Free != b.Free || a.Reach != b.Reach || a.Relayed != b.Relayed ||
		strings.Join(a.Roles, ",") != strings.Join(b.Roles, ",") ||
		strings.Join(a.Descriptors, ",") != strings.Join(b.Descriptors, ",") || len(a.RTTs) != len(b.RTTs) {
		return true
	}
	return false
}

// effectiveInterval stretches the interval so the whole federation stays
// within the topic budget: with N known peers each beaconing every I
// seconds the topic carries N/I beacons per second.
func (s *Service) effectiveInterval() time.Duration {
	s.mu.Lock()
	n := len(s.peers)
	s.mu.Unlock()
	d := time.Duration(float64(n) / s.cfg.topicBudget * float64(time.Second))
	return min(max(s.cfg.interval, d), MaxTTL/time.Duration(s.cfg.ttlFactor+1))
}

func (s *Service) publishLoop() {
	s.publish()
	last := time.Now()
	timer := time.NewTimer(s.effectiveInterval())
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
			if wait := s.cfg.minInterval - time.Since(last); wait > 0 {
				select {
				case <-s.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		s.publish()
		last = time.Now()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(s.effectiveInterval())
	}
}

// Beacon builds (but does not send) this node's current beacon.
func (s *Service) beacon(now time.Time) *Beacon {
	interval := s.effectiveInterval()
	b := &Beacon{Load: s.sampleLoad()}
	if s.cfg.free != nil {
		b.Free = s.cfg.free()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	issued := now.UnixMilli()
	if floor := s.lastIssue + s.cfg.floodGap.Milliseconds() + 1; issued < floor {
		issued = floor
	}
	s.lastIssue = issued
	b.Seq, b.Issued = s.seq, issued
	b.Expires = issued + (time.Duration(s.cfg.ttlFactor) * interval).Milliseconds()
	b.Roles = s.roles
	b.Reach = s.reach
	for _, a := range s.h.Addrs() {
		if strings.Contains(a.String(), "p2p-circuit") {
			b.Relayed = true
		}
	}
	var own []*Item
	for _, it := range s.items {
		if it.Owner == s.h.ID() {
			own = append(own, it)
		}
	}
	sort.Slice(own, func(i, j int) bool {
		if !own[i].Issued.Equal(own[j].Issued) {
			return own[i].Issued.After(own[j].Issued)
		}
		return own[i].ID < own[j].ID
	})
	b.DescriptorCount = int64(len(own))
	for i, it := range own {
		if i == MaxDescriptorIDs {
			break
		}
		if it.ID != "" && len(it.ID) <= maxIDLen && printableASCII(it.ID) {
			b.Descriptors = append(b.Descriptors, it.ID)
		}
	}
	sort.Strings(b.Descriptors)
	type pr struct {
		p peer.ID
		d time.Duration
	}
	var rtts []pr
	for p, d := range s.myRTT {
		if p != s.h.ID() && d > 0 {
			rtts = append(rtts, pr{p, min(d, MaxRTT)})
		}
	}
	// The nearest peers are the useful ones: planners look for compute
	// close to data, and far peers are reported by their own neighbours.
	sort.Slice(rtts, func(i, j int) bool {
		if rtts[i].d != rtts[j].d {
			return rtts[i].d < rtts[j].d
		}
		return rtts[i].p < rtts[j].p
	})
	for i, r := range rtts {
		if i == MaxRTTs {
			break
		}
		b.RTTs = append(b.RTTs, RTTSample{Peer: []byte(r.p), Micros: max(1, r.d.Microseconds())})
	}
	return b
}

func (s *Service) publish() {
	now := time.Now()
	b := s.beacon(now)
	raw, err := SealBeacon(s.key, b)
	if err != nil {
		s.log.Error("seal beacon", "err", err)
		return
	}
	// Our own entry goes in directly: the map shows self even if the topic
	// has no other peers yet.
	s.apply(&SignedBeacon{From: s.h.ID(), Beacon: *b, Raw: raw}, now)
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.topic.Publish(ctx, raw); err != nil {
		if s.ctx.Err() == nil {
			s.log.Debug("publish beacon", "err", err)
		}
		return
	}
	s.sent.Add(1)
	s.sentBytes.Add(uint64(len(raw)))
}

func (s *Service) sampleLoad() Load {
	if s.cfg.load != nil {
		l := s.cfg.load()
		l.CPU = min(max(l.CPU, 0), 100)
		l.Queue, l.Jobs, l.Queries = max(l.Queue, 0), max(l.Jobs, 0), max(l.Queries, 0)
		return l
	}
	return Load{CPU: SystemCPU()}
}

// SystemCPU estimates busy CPU share from the 1-minute load average; 0 where
// /proc/loadavg does not exist.
func SystemCPU() int64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	l, err := strconv.ParseFloat(f[0], 64)
	if err != nil || l < 0 {
		return 0
	}
	return min(100, int64(l/float64(runtime.NumCPU())*100))
}

func (s *Service) sweepLoop() {
	every := min(max(s.cfg.interval/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

func (s *Service) sweep(now time.Time) {
	s.mu.Lock()
	for id, p := range s.peers {
		if !p.Expires.After(now) && !p.Self {
			delete(s.peers, id)
			delete(s.myRTT, id)
			delete(s.probedAt, id)
			s.version++
			s.emit(EventPeerLeft, id.String(), "peer")
		}
	}
	for id, it := range s.items {
		if !it.Expires.IsZero() && !it.Expires.After(now) {
			delete(s.items, id)
			s.version++
			s.emit(EventItemRemoved, id, string(it.Kind))
		}
	}
	s.mu.Unlock()
	s.vmu.Lock()
	cutoff := now.Add(-MaxTTL - MaxClockSkew).UnixMilli()
	for id, st := range s.senders {
		if st.lastIssued < cutoff {
			delete(s.senders, id)
		}
	}
	s.vmu.Unlock()
}

func (s *Service) reachLoop(sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-sub.Out():
			if !ok {
				return
			}
			e, ok := ev.(event.EvtLocalReachabilityChanged)
			if !ok {
				continue
			}
			r := ReachUnknown
			switch e.Reachability {
			case network.ReachabilityPublic:
				r = ReachPublic
			case network.ReachabilityPrivate:
				r = ReachPrivate
			}
			s.mu.Lock()
			s.reach = r
			s.mu.Unlock()
			s.Touch()
		}
	}
}

// joinLoop sends a beacon soon after a direct neighbour joins the topic, so
// a new node appears in maps (and learns ours) without waiting a whole
// interval. It is bounded by the node's degree, not the federation's size,
// and rate-limited like every change beacon.
func (s *Service) joinLoop(h *pubsub.TopicEventHandler) {
	defer h.Cancel()
	for {
		ev, err := h.NextPeerEvent(s.ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			s.Touch()
		}
	}
}

func (s *Service) itemLoop(ch <-chan ItemEvent) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			switch {
			case ev.Item != nil:
				if err := s.AddItem(ev.Item); err != nil {
					s.log.Warn("item from source", "err", err)
				}
			case ev.RemovedID != "":
				s.RemoveItem(ev.RemovedID)
			}
		}
	}
}
