package taskpool

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Handler does the work of one task. The context ends at the task
// deadline, when the poster cancels, or when the lease is lost. A non-nil
// error makes a failed result carrying the error text.
type Handler func(ctx context.Context, t Task) ([]byte, error)

// AgentConfig says which tasks an agent wants and what it bids.
type AgentConfig struct {
	Pool     string
	Skill    string   // only tasks asking for this skill ("" = any)
	Kinds    []string // only these kinds (empty = any)
	Price    float64  // what the agent asks; tasks whose max price is lower are skipped
	Expected time.Duration
	// Capacity is how many tasks run at once (default 1).
	Capacity int
	// BidAhead is how many bids may be outstanding beyond free capacity
	// (default 0: bid only with a free slot, which is what makes gold win
	// over silver and bronze when agents are scarce).
	BidAhead    int
	Credentials []string
	// MinTimeLeft skips tasks whose deadline is closer than this.
	MinTimeLeft time.Duration
	// Filter, if set, must also accept a task.
	Filter  func(*Task) bool
	Handler Handler
	// Manual turns off automatic bidding: the agent only bids when told
	// to with BidOn (an external agent deciding for itself).
	Manual bool
}

// Agent bids on matching postings of one pool and runs the handler for
// the tasks it wins.
type Agent struct {
	s   *Service
	cfg AgentConfig

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	kick      chan struct{}

	mu         sync.Mutex
	closed     bool              // set under mu so accept never wg.Adds after Close's Wait
	candidates map[string]*Task  // key poster/id
	order      map[string]uint64 // per-agent tie-break among candidates of a tier
	pending    map[string]int64  // outstanding bids: key → give up at (ms)
	active     map[string]context.CancelFunc
}

// held is an agent's record of an assignment it acknowledged and, once
// done, of the result it still has to deliver (the outbox).
type held struct {
	Task      Task
	AssignEnv []byte
	Epoch     uint64
	ResultEnv []byte
	Attempts  int

	nextTry time.Time
}

func (h *held) key() string { return h.Task.Poster + "/" + h.Task.ID }

func heldKey(k string) ds.Key { return ds.NewKey("/taskpool/held/" + k) }

// RunAgent starts an agent on the service. It stops with Close, or when
// the service closes.
func (s *Service) RunAgent(cfg AgentConfig) (*Agent, error) {
	if err := validName("pool", cfg.Pool); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Handler == nil {
		return nil, errors.New("agent: handler is required")
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 1
	}
	if cfg.Capacity < 0 || cfg.BidAhead < 0 {
		return nil, fmt.Errorf("agent: capacity %d, bid ahead %d, want >= 0", cfg.Capacity, cfg.BidAhead)
	}
	if cfg.Price < 0 {
		return nil, fmt.Errorf("agent: price %v, want >= 0", cfg.Price)
	}
	a := &Agent{s: s, cfg: cfg, kick: make(chan struct{}, 1),
		candidates: map[string]*Task{}, order: map[string]uint64{}, pending: map[string]int64{}, active: map[string]context.CancelFunc{}}
	a.ctx, a.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	if _, err := s.joinPoolLocked(cfg.Pool); err != nil {
		s.mu.Unlock()
		a.cancel()
		return nil, fmt.Errorf("agent: %w", err)
	}
	s.agents[a] = struct{}{}
	s.mu.Unlock()
	a.wg.Add(1)
	go a.loop()
	return a, nil
}

// Close stops bidding and cancels running handlers; results of handlers
// that already finished stay in the outbox.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.s.mu.Lock()
		delete(a.s.agents, a)
		a.s.mu.Unlock()
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		a.cancel()
		a.wg.Wait()
	})
	return nil
}

// Active is the number of tasks the agent is running.
func (a *Agent) Active() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.active)
}

func (a *Agent) wants(t *Task) bool {
	if t.Pool != a.cfg.Pool || t.Poster == "" {
		return false
	}
	if a.cfg.Skill != "" && t.Skill != a.cfg.Skill {
		return false
	}
	if len(a.cfg.Kinds) > 0 {
		ok := false
		for _, k := range a.cfg.Kinds {
			if k == t.Kind {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if t.MaxPrice > 0 && a.cfg.Price > t.MaxPrice {
		return false
	}
	if time.Until(t.DeadlineTime()) < a.cfg.MinTimeLeft {
		return false
	}
	if !t.EligibleFor(a.s.self) {
		return false
	}
	if a.cfg.Filter != nil && !a.cfg.Filter(t) {
		return false
	}
	return true
}

func (a *Agent) onPosting(t *Task) {
	if !a.wants(t) {
		return
	}
	k := t.Poster + "/" + t.ID
	a.mu.Lock()
	if _, running := a.active[k]; running {
		a.mu.Unlock()
		return
	}
	if old, ok := a.candidates[k]; !ok || old.Repost < t.Repost {
		a.candidates[k] = t
		if !ok {
			f := fnv.New64a()
			f.Write([]byte(a.s.self))
			f.Write([]byte(k))
			a.order[k] = f.Sum64()
		}
		if ok && old.Repost < t.Repost {
			// A repost is a new round: an old bid no longer counts.
			delete(a.pending, k)
		}
	}
	a.mu.Unlock()
	a.poke()
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) loop() {
	defer a.wg.Done()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.kick:
		case <-tk.C:
		}
		a.bidSome()
	}
}

// bidSome bids on the best candidates while there is room: tier first
// (gold, silver, bronze), then an order that differs per agent, so that
// many agents do not all pile onto the same task.
func (a *Agent) bidSome() {
	now := time.Now().UnixMilli()
	a.mu.Lock()
	for k, until := range a.pending {
		if now > until {
			delete(a.pending, k)
			a.forgetLocked(k)
		}
	}
	for k, t := range a.candidates {
		if t.Deadline <= now {
			a.forgetLocked(k)
		}
	}
	room := a.cfg.Capacity + a.cfg.BidAhead - len(a.active) - len(a.pending)
	if a.cfg.Manual || room <= 0 || len(a.candidates) == 0 {
		a.mu.Unlock()
		return
	}
	type cand struct {
		k string
		t *Task
		h uint64
	}
	var cs []cand
	for k, t := range a.candidates {
		if _, ok := a.pending[k]; ok {
			continue
		}
		cs = append(cs, cand{k, t, a.order[k]})
	}
	sort.Slice(cs, func(i, j int) bool {
		if ri, rj := cs[i].t.Tier.rank(), cs[j].t.Tier.rank(); ri != rj {
			return ri > rj
		}
		return cs[i].h < cs[j].h
	})
	if len(cs) > room {
		cs = cs[:room]
	}
	for _, c := range cs {
		// Provisional: until the poster says when it decides.
		a.pending[c.k] = now + a.s.cfg.callTimeout.Milliseconds()
	}
	load := float64(len(a.active)) / float64(a.cfg.Capacity)
	a.mu.Unlock()
	for _, c := range cs {
		a.wg.Add(1)
		go a.bid(c.k, c.t, load)
	}
}

func (a *Agent) bid(k string, t *Task, load float64) {
	defer a.wg.Done()
	_ = a.sendBid(a.ctx, k, t, a.cfg.Price, a.cfg.Expected, load)
}

// sendBid signs and sends one bid; the key stays pending only if the
// poster is considering it.
func (a *Agent) sendBid(ctx context.Context, k string, t *Task, price float64, expected time.Duration, load float64) error {
	b := Bid{TaskID: t.ID, Bidder: a.s.self.String(), Price: price,
		ExpectedMs: expected.Milliseconds(), Load: clip01(load),
		Credentials: a.cfg.Credentials, Time: time.Now().UnixMilli(), Repost: t.Repost}
	env, err := SealBid(&b, a.s.key)
	if err != nil {
		a.drop(k)
		return fmt.Errorf("bid on %s: %w", t.ID, err)
	}
	poster, err := peer.Decode(t.Poster)
	if err != nil {
		a.drop(k)
		return fmt.Errorf("bid on %s: poster %q: %w", t.ID, t.Poster, err)
	}
	resp, err := a.s.call(ctx, poster, &wireMsg{Op: opBid, Env: env})
	if err != nil {
		a.drop(k)
		return fmt.Errorf("bid on %s: %w", t.ID, err)
	}
	if resp.Code != codePending {
		a.drop(k)
		return fmt.Errorf("bid on %s: poster answered %s: %s: %w", t.ID, resp.Code, resp.Detail, ErrBidRefused)
	}
	a.mu.Lock()
	if _, ok := a.pending[k]; ok {
		// Give the poster a moment past its decision to send the offer.
		a.pending[k] = max(resp.Until, time.Now().UnixMilli()) + 2000
	}
	a.mu.Unlock()
	return nil
}

// ErrBidRefused is returned by BidOn when the poster will not consider the
// bid (task assigned, closed, not eligible, price too high).
var ErrBidRefused = errors.New("bid refused")

// BidOn bids on a posting this agent has seen (see Service.Postings), at
// price and expected duration; the poster's policy then decides. It is how
// an external agent that chooses its own tasks bids through the node.
func (a *Agent) BidOn(ctx context.Context, poster peer.ID, taskID string, price float64, expected time.Duration) error {
	if price < 0 || expected < 0 {
		return fmt.Errorf("bid: price %v, expected %v, want both >= 0", price, expected)
	}
	k := poster.String() + "/" + taskID
	a.mu.Lock()
	t, ok := a.candidates[k]
	if !ok {
		a.mu.Unlock()
		return fmt.Errorf("bid on %s from %s: posting not seen on pool %s or no longer open: %w", taskID, poster, a.cfg.Pool, ErrNotFound)
	}
	a.pending[k] = time.Now().Add(a.s.cfg.callTimeout).UnixMilli()
	load := float64(len(a.active)) / float64(a.cfg.Capacity)
	a.mu.Unlock()
	return a.sendBid(ctx, k, t, price, expected, load)
}

func (a *Agent) drop(k string) {
	a.mu.Lock()
	delete(a.pending, k)
	a.forgetLocked(k)
	a.mu.Unlock()
	a.poke()
}

// findAgentFor returns the agent with an outstanding bid on key.
func (s *Service) findAgentFor(k string) *Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a := range s.agents {
		a.mu.Lock()
		_, ok := a.pending[k]
		_, ok2 := a.candidates[k]
		a.mu.Unlock()
		if ok || ok2 {
			return a
		}
	}
	return nil
}

// onOffer is the agent side receiving an assignment.
func (s *Service) onOffer(remote peer.ID, m *wireMsg) *wireMsg {
	asg, err := OpenAssignment(m.Env)
	if err != nil {
		return reply(codeRejected, err.Error())
	}
	if asg.Poster != remote.String() {
		return reply(codeRejected, fmt.Sprintf("assignment: poster %s is not the sender %s", asg.Poster, remote))
	}
	if asg.Agent != s.self.String() {
		return reply(codeRejected, fmt.Sprintf("assignment: for agent %s, this is %s", asg.Agent, s.self))
	}
	k := asg.Poster + "/" + asg.TaskID
	a := s.findAgentFor(k)
	if a == nil {
		return reply(codeDeclined, "no agent here bid on "+asg.TaskID)
	}
	return a.accept(asg, m.Env)
}

func (a *Agent) accept(asg *Assignment, env []byte) *wireMsg {
	k := asg.Poster + "/" + asg.TaskID
	a.mu.Lock()
	t, ok := a.candidates[k]
	if !ok || t.Poster != asg.Poster {
		a.mu.Unlock()
		return reply(codeDeclined, "unknown task "+asg.TaskID)
	}
	if a.closed || a.ctx.Err() != nil {
		a.mu.Unlock()
		return reply(codeDeclined, "agent stopping")
	}
	if len(a.active) >= a.cfg.Capacity {
		a.mu.Unlock()
		return reply(codeDeclined, "agent at capacity")
	}
	if time.Now().UnixMilli() >= t.Deadline {
		a.mu.Unlock()
		return reply(codeDeclined, "deadline passed")
	}
	ack := Ack{TaskID: asg.TaskID, Agent: a.s.self.String(), Epoch: asg.Epoch}
	ackEnv, err := seal(ackRec{&ack}, a.s.key)
	if err != nil {
		a.mu.Unlock()
		return reply(codeDeclined, "sign ack: "+err.Error())
	}
	h := &held{Task: *t, AssignEnv: env, Epoch: asg.Epoch}
	if err := a.s.saveHeld(h); err != nil {
		a.mu.Unlock()
		return reply(codeDeclined, "agent could not store the assignment")
	}
	delete(a.pending, k)
	a.forgetLocked(k)
	ctx, cancel := context.WithDeadline(a.ctx, t.DeadlineTime())
	a.active[k] = cancel
	// Add while closed is known false under mu: Close cannot be in Wait yet.
	a.wg.Add(1)
	a.mu.Unlock()
	a.s.mu.Lock()
	a.s.held[k] = h
	a.s.mu.Unlock()
	go a.run(ctx, cancel, k, h)
	return &wireMsg{Code: codeAck, Env: ackEnv}
}

// run executes the handler, renews the lease meanwhile and hands the result
// to the outbox.
func (a *Agent) run(ctx context.Context, cancel context.CancelFunc, k string, h *held) {
	defer a.wg.Done()
	defer func() {
		cancel()
		a.mu.Lock()
		delete(a.active, k)
		a.mu.Unlock()
		a.poke()
	}()
	var lost lostFlag
	rctx, rcancel := context.WithCancel(ctx)
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		a.renewLoop(rctx, cancel, h, &lost)
	}()
	out, herr := a.safeHandle(ctx, h.Task)
	rcancel()
	rwg.Wait()
	if lost.get() || a.ctx.Err() != nil {
		// The lease is gone or the node is stopping mid-task: no result.
		a.s.forgetHeld(k)
		return
	}
	r := Result{TaskID: h.Task.ID, Poster: h.Task.Poster, Agent: a.s.self.String(), Epoch: h.Epoch,
		OK: herr == nil, Time: time.Now().UnixMilli()}
	if herr != nil {
		r.Error = truncate(herr.Error(), 4096)
	} else {
		r.Output = out
	}
	if len(r.Output) > a.s.cfg.maxResult {
		r.OK, r.Output = false, nil
		r.Error = fmt.Sprintf("output of %d bytes is over the %d byte limit", len(out), a.s.cfg.maxResult)
	}
	env, err := seal(resultRec{&r}, a.s.key)
	if err != nil {
		a.s.log.Error("seal result", "task", h.Task.ID, "err", err)
		a.s.forgetHeld(k)
		return
	}
	// Encode under the lock (deliver touches h), fsync outside it so one
	// slow disk write does not stall the whole service.
	a.s.mu.Lock()
	h.ResultEnv = env
	b, err := encMode.Marshal(h)
	a.s.mu.Unlock()
	if err == nil {
		err = a.s.store.Put(a.s.ctx, heldKey(k), b)
	}
	if err != nil {
		a.s.log.Error("persist result", "task", h.Task.ID, "err", err)
	}
	a.s.deliver(k)
}

func (a *Agent) safeHandle(ctx context.Context, t Task) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return a.cfg.Handler(ctx, t)
}

type lostFlag struct {
	mu sync.Mutex
	v  bool
}

func (l *lostFlag) set()      { l.mu.Lock(); l.v = true; l.mu.Unlock() }
func (l *lostFlag) get() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.v }

func (a *Agent) renewLoop(ctx context.Context, cancelRun context.CancelFunc, h *held, lost *lostFlag) {
	every := h.Task.Lease() / 3
	if every < 5*time.Millisecond {
		every = 5 * time.Millisecond
	}
	poster, err := peer.Decode(h.Task.Poster)
	if err != nil {
		return
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		resp, err := a.s.call(ctx, poster, &wireMsg{Op: opRenew, TaskID: h.Task.ID, Epoch: h.Epoch})
		if err != nil {
			// Poster unreachable: keep working; the result waits in the
			// outbox if it is still down when we finish.
			continue
		}
		switch resp.Code {
		case codeOK:
		case codeStale, codeCancelled, codeNotFound:
			a.s.log.Info("lease lost", "task", h.Task.ID, "code", resp.Code, "detail", resp.Detail)
			lost.set()
			cancelRun()
			return
		}
	}
}

// onLost: the poster chose another agent.
func (s *Service) onLost(remote peer.ID, m *wireMsg) *wireMsg {
	k := remote.String() + "/" + m.TaskID
	s.mu.Lock()
	agents := make([]*Agent, 0, len(s.agents))
	for a := range s.agents {
		agents = append(agents, a)
	}
	s.mu.Unlock()
	for _, a := range agents {
		a.mu.Lock()
		_, ok := a.pending[k]
		delete(a.pending, k)
		a.forgetLocked(k)
		a.mu.Unlock()
		if ok {
			a.poke()
		}
	}
	return &wireMsg{Code: codeOK}
}

// onCancelNotice: the poster withdrew a task we hold.
func (s *Service) onCancelNotice(remote peer.ID, m *wireMsg) *wireMsg {
	k := remote.String() + "/" + m.TaskID
	s.mu.Lock()
	h, ok := s.held[k]
	agents := make([]*Agent, 0, len(s.agents))
	for a := range s.agents {
		agents = append(agents, a)
	}
	s.mu.Unlock()
	if !ok || h.Epoch != m.Epoch {
		return reply(codeNotFound, "not held")
	}
	for _, a := range agents {
		a.mu.Lock()
		cancel, running := a.active[k]
		a.mu.Unlock()
		if running {
			cancel()
		}
	}
	// A result not yet delivered is moot now.
	s.forgetHeld(k)
	return &wireMsg{Code: codeOK}
}

func (s *Service) saveHeld(h *held) error {
	b, err := encMode.Marshal(h)
	if err != nil {
		return err
	}
	return s.store.Put(s.ctx, heldKey(h.key()), b)
}

func (s *Service) forgetHeld(k string) {
	s.mu.Lock()
	delete(s.held, k)
	s.mu.Unlock()
	if err := s.store.Delete(context.Background(), heldKey(k)); err != nil {
		s.log.Warn("forget held", "key", k, "err", err)
	}
}

// deliver tries once to hand a finished result to its poster. A poster that
// is unreachable leaves it in the outbox; any definite answer (applied, or
// stale/rejected) removes it.
func (s *Service) deliver(k string) {
	s.mu.Lock()
	h, ok := s.held[k]
	var env []byte
	var task Task
	if ok {
		env, task = h.ResultEnv, h.Task
		h.Attempts++
	}
	s.mu.Unlock()
	if !ok || env == nil {
		return
	}
	poster, err := peer.Decode(task.Poster)
	if err != nil {
		s.forgetHeld(k)
		return
	}
	if len(s.h.Network().ConnsToPeer(poster)) == 0 && s.cfg.routing != nil {
		fctx, cancel := context.WithTimeout(s.ctx, s.cfg.callTimeout)
		if ai, err := s.cfg.routing.FindPeer(fctx, poster); err == nil {
			s.h.Peerstore().AddAddrs(poster, ai.Addrs, time.Hour)
		}
		cancel()
	}
	// Our own retry schedule replaces the swarm's dial backoff, which after
	// a long outage would keep us from noticing the poster is back.
	dctx := network.WithForceDirectDial(s.ctx, "taskpool result delivery")
	resp, err := s.call(dctx, poster, &wireMsg{Op: opResult, Env: env})
	if err != nil {
		s.log.Debug("result delivery failed, kept for retry", "task", task.ID, "poster", poster, "err", err)
		s.mu.Lock()
		shift := min(h.Attempts, 5)
		h.nextTry = time.Now().Add(s.cfg.retry << shift)
		s.mu.Unlock()
		return
	}
	switch resp.Code {
	case codeOK:
	case codeStale:
		s.log.Info("result was late, poster ignored it", "task", task.ID, "detail", resp.Detail)
	default:
		if resp.Detail == "poster could not store the result; retry" {
			return
		}
		s.log.Warn("result refused", "task", task.ID, "code", resp.Code, "detail", resp.Detail)
	}
	s.forgetHeld(k)
}

func (s *Service) outboxLoop() {
	defer s.wg.Done()
	tk := time.NewTicker(s.cfg.retry)
	defer tk.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tk.C:
		case <-s.outboxKick:
		}
		s.mu.Lock()
		var keys []string
		now := time.Now()
		for k, h := range s.held {
			if h.ResultEnv != nil && !now.Before(h.nextTry) {
				keys = append(keys, k)
			}
		}
		s.mu.Unlock()
		for _, k := range keys {
			if s.ctx.Err() != nil {
				return
			}
			s.deliver(k)
		}
	}
}

// Outbox is the number of finished results waiting for their posters.
func (s *Service) Outbox() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.held {
		if h.ResultEnv != nil {
			n++
		}
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (a *Agent) forgetLocked(k string) {
	delete(a.candidates, k)
	delete(a.order, k)
}
