package taskpool

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"
)

// State of a posted task on its poster.
type State string

// The states. Open → Offered → Assigned → Done|Failed; Assigned → Open when
// the lease expires; any non-terminal state → Cancelled or Expired.
const (
	StateOpen      State = "open"
	StateOffered   State = "offered"
	StateAssigned  State = "assigned"
	StateDone      State = "done"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	StateExpired   State = "expired"
)

// Terminal reports whether nothing more happens to a task in s.
func (s State) Terminal() bool {
	switch s {
	case StateDone, StateFailed, StateCancelled, StateExpired:
		return true
	}
	return false
}

// TaskSpec is what a client asks to post. Zero fields take the service
// defaults (see WithDefaults); ID defaults to a random id.
type TaskSpec struct {
	ID        string        `json:"id,omitempty"`
	Pool      string        `json:"pool"`
	Kind      string        `json:"kind"`
	Skill     string        `json:"skill,omitempty"`
	Input     []byte        `json:"input,omitempty"`
	InputCID  string        `json:"input_cid,omitempty"`
	Deadline  time.Duration `json:"deadline,omitempty"`
	MaxPrice  float64       `json:"max_price,omitempty"`
	Tier      Tier          `json:"tier,omitempty"`
	Policy    Policy        `json:"policy,omitempty"`
	Eligible  []peer.ID     `json:"eligible,omitempty"`
	Lease     time.Duration `json:"lease,omitempty"`
	BidWindow time.Duration `json:"bid_window,omitempty"`
}

// Attempt is one assignment of a task and how it ended.
type Attempt struct {
	Epoch   uint64 `json:"epoch"`
	Agent   string `json:"agent"`
	Start   int64  `json:"start"`
	End     int64  `json:"end,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

type bidEntry struct {
	Bid      Bid
	Env      []byte
	Received int64
	score    float64
}

// posted is the poster's record of one task; it is persisted on every
// state change under /taskpool/posted/<id>.
type posted struct {
	Task       Task
	Env        []byte
	State      State
	Holder     string
	Epoch      uint64
	LeaseUntil int64
	Bids       []*bidEntry
	DecideAt   int64
	ResultEnv  []byte
	Result     *Result
	History    []Attempt
	PostedAt   int64
	AssignedAt int64
	FirstAt    int64 // first assignment, for latency measurements
	DoneAt     int64
	Reason     string

	offering bool
	declined map[string]bool
	lastBest []ScoredBid
}

// ScoredBid is a bid with the score the best policy gave it.
type ScoredBid struct {
	Bid   Bid     `json:"bid"`
	Score float64 `json:"score"`
}

// Status is a posted task as the poster sees it.
type Status struct {
	Task       Task        `json:"task"`
	State      State       `json:"state"`
	Holder     string      `json:"holder,omitempty"`
	Epoch      uint64      `json:"epoch"`
	LeaseUntil int64       `json:"lease_until,omitempty"`
	Bids       []Bid       `json:"bids,omitempty"`
	Result     *Result     `json:"result,omitempty"`
	History    []Attempt   `json:"history,omitempty"`
	PostedAt   int64       `json:"posted_at"`
	AssignedAt int64       `json:"assigned_at,omitempty"`
	FirstAt    int64       `json:"first_assigned_at,omitempty"`
	DoneAt     int64       `json:"done_at,omitempty"`
	Reason     string      `json:"reason,omitempty"`
	LastRanked []ScoredBid `json:"last_ranked,omitempty"`
}

func (p *posted) status() Status {
	st := Status{Task: p.Task, State: p.State, Holder: p.Holder, Epoch: p.Epoch, LeaseUntil: p.LeaseUntil,
		Result: p.Result, History: append([]Attempt(nil), p.History...), PostedAt: p.PostedAt,
		AssignedAt: p.AssignedAt, FirstAt: p.FirstAt, DoneAt: p.DoneAt, Reason: p.Reason,
		LastRanked: append([]ScoredBid(nil), p.lastBest...)}
	for _, b := range p.Bids {
		st.Bids = append(st.Bids, b.Bid)
	}
	return st
}

// holds reports whether agent holds the task at epoch: assigned, or offered
// and already acting on it (its ack may still be in flight).
func (p *posted) holds(agent string, epoch uint64) bool {
	return (p.State == StateAssigned || p.State == StateOffered) && p.Holder == agent && p.Epoch == epoch
}

func (p *posted) event(detail string) Event {
	return Event{TaskID: p.Task.ID, State: p.State, Holder: p.Holder, Epoch: p.Epoch, Time: time.Now(), Detail: detail}
}

var idEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewTaskID returns a random task id.
func NewTaskID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return "t" + idEnc.EncodeToString(b[:])
}

// Post signs a task and publishes it on its pool. It is persisted before
// it is published, so a crash right after Post returns loses nothing.
func (s *Service) Post(ctx context.Context, spec TaskSpec) (Task, error) {
	now := time.Now()
	t := Task{
		ID: spec.ID, Pool: spec.Pool, Kind: spec.Kind, Skill: spec.Skill, Input: spec.Input,
		InputCID: spec.InputCID, MaxPrice: spec.MaxPrice, Tier: spec.Tier, Policy: spec.Policy,
		Poster: s.self.String(), Created: now.UnixMilli(),
	}
	if t.ID == "" {
		t.ID = NewTaskID()
	}
	if t.Tier == "" {
		t.Tier = Bronze
	}
	if t.Policy == "" {
		t.Policy = First
	}
	d := spec.Deadline
	if d == 0 {
		d = s.cfg.deadline
	}
	if d < 0 {
		return Task{}, fmt.Errorf("post: deadline %v, want > 0", d)
	}
	t.Deadline = now.Add(d).UnixMilli()
	lease := spec.Lease
	if lease == 0 {
		lease = s.cfg.lease
	}
	t.LeaseMs = lease.Milliseconds()
	if t.Policy == Best {
		w := spec.BidWindow
		if w == 0 {
			w = s.cfg.bidWindow
		}
		t.BidWindowMs = w.Milliseconds()
	}
	for _, e := range spec.Eligible {
		t.Eligible = append(t.Eligible, e.String())
	}
	if spec.Input != nil && spec.InputCID != "" {
		return Task{}, errors.New("post: input and input_cid are exclusive, give one")
	}
	env, err := SealPosting(&t, s.key)
	if err != nil {
		return Task{}, fmt.Errorf("post: %w", err)
	}
	if len(env) > MaxPostingBytes {
		return Task{}, fmt.Errorf("post: posting is %d bytes, at most %d accepted", len(env), MaxPostingBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Task{}, ErrClosed
	}
	if _, ok := s.posted[t.ID]; ok {
		return Task{}, fmt.Errorf("post %s: %w", t.ID, ErrDuplicateTask)
	}
	if has, err := s.store.Has(ctx, postedKey(t.ID)); err == nil && has {
		return Task{}, fmt.Errorf("post %s: %w (kept in the store until collected)", t.ID, ErrDuplicateTask)
	}
	ps, err := s.joinPoolLocked(t.Pool)
	if err != nil {
		return Task{}, fmt.Errorf("post %s: %w", t.ID, err)
	}
	p := &posted{Task: t, Env: env, State: StateOpen, PostedAt: now.UnixMilli()}
	if err := s.savePostedLocked(p); err != nil {
		return Task{}, fmt.Errorf("post %s: %w", t.ID, err)
	}
	s.posted[t.ID] = p
	s.emitLocked(p.event("posted"))
	if err := ps.topic.Publish(ctx, env); err != nil {
		// The task stays open and persisted; the next repost retries.
		s.log.Warn("publish posting", "task", t.ID, "err", err)
	}
	return t, nil
}

// repostLocked puts a task back in the pool with a higher Repost number;
// also are written in the same batch as the task.
func (s *Service) repostLocked(p *posted, why string, also ...storeOp) {
	p.Task.Repost++
	env, err := SealPosting(&p.Task, s.key)
	if err != nil {
		s.log.Error("reseal posting", "task", p.Task.ID, "err", err)
		if len(also) > 0 {
			if err := s.store.Write(s.ctx, also...); err != nil {
				s.log.Error("persist with repost", "task", p.Task.ID, "err", err)
			}
		}
		return
	}
	p.Env = env
	p.State = StateOpen
	p.Holder = ""
	p.Bids = nil
	p.DecideAt = 0
	p.declined = nil
	p.PostedAt = time.Now().UnixMilli()
	if err := s.savePostedLocked(p, also...); err != nil {
		s.log.Error("persist repost", "task", p.Task.ID, "err", err)
	}
	s.stats.Reposts++
	s.emitLocked(p.event(why))
	ps, err := s.joinPoolLocked(p.Task.Pool)
	if err != nil {
		s.log.Warn("repost: join pool", "task", p.Task.ID, "err", err)
		return
	}
	topic := ps.topic
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := topic.Publish(s.ctx, env); err != nil {
			s.log.Warn("republish posting", "task", p.Task.ID, "err", err)
		}
	}()
}

// onBid is the poster receiving interest.
func (s *Service) onBid(remote peer.ID, m *wireMsg) *wireMsg {
	b, err := OpenBid(m.Env)
	if err != nil {
		s.mu.Lock()
		s.stats.BidsRejected++
		s.mu.Unlock()
		return reply(codeRejected, err.Error())
	}
	if b.Bidder != remote.String() {
		s.mu.Lock()
		s.stats.BidsRejected++
		s.mu.Unlock()
		return reply(codeRejected, fmt.Sprintf("bid: bidder %s is not the sender %s", b.Bidder, remote))
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.BidsReceived++
	p, ok := s.posted[b.TaskID]
	if !ok {
		return reply(codeNotFound, fmt.Sprintf("task %s: not posted here", b.TaskID))
	}
	switch {
	case p.State.Terminal():
		return reply(codeRejected, fmt.Sprintf("task %s is %s", b.TaskID, p.State))
	case p.State == StateAssigned:
		return reply(codeRejected, fmt.Sprintf("task %s is already assigned", b.TaskID))
	case !p.Task.EligibleFor(remote):
		return reply(codeRejected, fmt.Sprintf("task %s: %s is not eligible", b.TaskID, remote))
	case p.Task.MaxPrice > 0 && b.Price > p.Task.MaxPrice:
		return reply(codeRejected, fmt.Sprintf("price %v above max price %v", b.Price, p.Task.MaxPrice))
	}
	e := &bidEntry{Bid: *b, Env: m.Env, Received: now.UnixMilli()}
	replaced := false
	for i, old := range p.Bids {
		if old.Bid.Bidder == b.Bidder {
			p.Bids[i] = e
			replaced = true
		}
	}
	if !replaced {
		if len(p.Bids) >= 1024 {
			return reply(codeRejected, fmt.Sprintf("task %s: too many bids", b.TaskID))
		}
		p.Bids = append(p.Bids, e)
	}
	delete(p.declined, b.Bidder)
	switch p.Task.Policy {
	case First:
		if p.State == StateOpen && !p.offering {
			s.startOfferLocked(p, "")
		}
		return &wireMsg{Code: codePending, Until: now.UnixMilli()}
	case Best:
		if p.DecideAt == 0 {
			end := p.PostedAt + p.Task.BidWindowMs
			if end <= now.UnixMilli() {
				end = now.UnixMilli() + p.Task.BidWindowMs
			}
			p.DecideAt = end
		}
		return &wireMsg{Code: codePending, Until: p.DecideAt}
	default: // Approve: the client decides; keep the bid across restarts.
		if err := s.savePostedLocked(p); err != nil {
			return reply(codeRejected, "poster could not store the bid")
		}
		s.emitLocked(p.event("bid from " + b.Bidder))
		return &wireMsg{Code: codePending, Until: p.Task.Deadline}
	}
}

// startOfferLocked offers the task to its candidates in policy order, one
// at a time, until one acknowledges. only restricts the candidates to one
// peer (Approve).
func (s *Service) startOfferLocked(p *posted, only string) {
	if s.closed {
		return
	}
	p.offering = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.offerLoop(p, only)
	}()
}

func (s *Service) offerLoop(p *posted, only string) error {
	for {
		s.mu.Lock()
		if p.State != StateOpen || s.closed {
			p.offering = false
			s.mu.Unlock()
			return ErrNotOpen
		}
		cand := s.nextCandidateLocked(p, only)
		if cand == nil {
			p.offering = false
			if only == "" && p.Task.Policy == Best && len(p.Bids) > 0 {
				p.DecideAt = time.Now().UnixMilli() + p.Task.BidWindowMs
			} else if p.Task.Policy == Best {
				p.DecideAt = 0
			}
			s.mu.Unlock()
			if only != "" {
				return ErrDeclined
			}
			return ErrNoBid
		}
		// The epoch is bumped and persisted before the offer leaves, so a
		// poster that crashes mid-offer never hands out one epoch twice.
		p.Epoch++
		p.State = StateOffered
		p.Holder = cand.Bid.Bidder
		now := time.Now()
		a := Assignment{TaskID: p.Task.ID, Poster: s.self.String(), Agent: cand.Bid.Bidder,
			Epoch: p.Epoch, LeaseUntil: now.Add(p.Task.Lease()).UnixMilli(), Time: now.UnixMilli()}
		if err := s.savePostedLocked(p); err != nil {
			s.log.Error("persist offer", "task", p.Task.ID, "err", err)
		}
		s.emitLocked(p.event("offered"))
		s.mu.Unlock()

		agent, _ := peer.Decode(cand.Bid.Bidder)
		err := s.sendOffer(agent, &a)
		if errors.Is(err, errAmbiguous) {
			// The agent may have acked and started: treat it as assigned
			// and let the lease decide. If it is not working on the task
			// it will not renew, and the task comes back.
			s.log.Debug("offer outcome unknown, assigned under lease", "task", p.Task.ID, "agent", agent, "err", err)
			err = nil
		}

		s.mu.Lock()
		// A fast agent's result can beat its ack here; the result, signed
		// for this epoch, proves the ack.
		resultIn := p.Result != nil && p.Result.Epoch == a.Epoch
		if p.Epoch != a.Epoch || (p.State != StateOffered && !resultIn) {
			// Cancelled or expired meanwhile.
			p.offering = false
			s.mu.Unlock()
			return ErrNotOpen
		}
		if err != nil && !resultIn {
			s.log.Debug("offer declined", "task", p.Task.ID, "agent", agent, "err", err)
			if p.declined == nil {
				p.declined = map[string]bool{}
			}
			p.declined[cand.Bid.Bidder] = true
			p.State = StateOpen
			p.Holder = ""
			s.removeBidLocked(p, cand.Bid.Bidder)
			s.emitLocked(p.event("declined by " + cand.Bid.Bidder))
			s.mu.Unlock()
			if only != "" {
				s.mu.Lock()
				p.offering = false
				s.mu.Unlock()
				return fmt.Errorf("assign %s to %s: %w: %v", p.Task.ID, agent, ErrDeclined, err)
			}
			continue
		}
		if !resultIn {
			p.State = StateAssigned
			p.LeaseUntil = time.Now().Add(p.Task.Lease()).UnixMilli()
			s.noteAssignedLocked(p)
		}
		p.offering = false
		losers := make([]string, 0, len(p.Bids))
		for _, b := range p.Bids {
			if b.Bid.Bidder != p.Holder {
				losers = append(losers, b.Bid.Bidder)
			}
		}
		p.Bids = nil
		if err := s.savePostedLocked(p); err != nil {
			s.log.Error("persist assignment", "task", p.Task.ID, "err", err)
		}
		s.emitLocked(p.event("assigned"))
		s.notifyLocked(losers, &wireMsg{Op: opLost, Poster: s.self.String(), TaskID: p.Task.ID})
		s.mu.Unlock()
		return nil
	}
}

// noteAssignedLocked records the start of the current epoch's attempt once.
func (s *Service) noteAssignedLocked(p *posted) {
	if n := len(p.History); n > 0 && p.History[n-1].Epoch == p.Epoch {
		return
	}
	now := time.Now().UnixMilli()
	p.AssignedAt = now
	if p.FirstAt == 0 {
		p.FirstAt = now
	}
	p.History = append(p.History, Attempt{Epoch: p.Epoch, Agent: p.Holder, Start: now})
}

func (s *Service) nextCandidateLocked(p *posted, only string) *bidEntry {
	var cands []*bidEntry
	for _, b := range p.Bids {
		if p.declined[b.Bid.Bidder] {
			continue
		}
		if only != "" && b.Bid.Bidder != only {
			continue
		}
		cands = append(cands, b)
	}
	if len(cands) == 0 {
		return nil
	}
	if p.Task.Policy == Best && only == "" {
		rankBids(&p.Task, cands, s.reputationLocked, time.Now(), s.cfg.weights)
		p.lastBest = p.lastBest[:0]
		for _, c := range cands {
			p.lastBest = append(p.lastBest, ScoredBid{Bid: c.Bid, Score: c.score})
		}
	}
	// First: arrival order, which cands already has.
	return cands[0]
}

func (s *Service) removeBidLocked(p *posted, bidder string) {
	out := p.Bids[:0]
	for _, b := range p.Bids {
		if b.Bid.Bidder != bidder {
			out = append(out, b)
		}
	}
	p.Bids = out
}

// sendOffer sends a signed assignment and checks the agent's signed ack.
func (s *Service) sendOffer(agent peer.ID, a *Assignment) error {
	env, err := seal(assignmentRec{a}, s.key)
	if err != nil {
		return err
	}
	resp, err := s.call(s.ctx, agent, &wireMsg{Op: opOffer, Env: env})
	if err != nil {
		if errors.Is(err, errUnreached) {
			return err
		}
		return fmt.Errorf("%w: %w", errAmbiguous, err)
	}
	if resp.Code != codeAck {
		return fmt.Errorf("%s: %s", resp.Code, resp.Detail)
	}
	ack, err := OpenAck(resp.Env)
	if err != nil {
		return err
	}
	if ack.Agent != agent.String() || ack.TaskID != a.TaskID || ack.Epoch != a.Epoch {
		return fmt.Errorf("ack for %s/%s epoch %d does not match the offer %s/%s epoch %d",
			ack.TaskID, ack.Agent, ack.Epoch, a.TaskID, a.Agent, a.Epoch)
	}
	return nil
}

// notifyLocked sends best-effort notices in the background.
func (s *Service) notifyLocked(peers []string, m *wireMsg) {
	if len(peers) == 0 || s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, ps := range peers {
			p, err := peer.Decode(ps)
			if err != nil {
				continue
			}
			mm := *m
			if _, err := s.call(s.ctx, p, &mm); err != nil {
				s.log.Debug("notice", "op", m.Op, "peer", p, "err", err)
			}
		}
	}()
}

// Approve assigns a task posted with the approve policy (or any open task)
// to a peer that bid on it, and returns once the agent acknowledged.
func (s *Service) Approve(ctx context.Context, id string, agent peer.ID) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("approve %s: %w", id, ErrClosed)
	}
	p, ok := s.posted[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("approve %s: %w", id, ErrNotFound)
	}
	if p.State != StateOpen || p.offering {
		st := p.State
		s.mu.Unlock()
		return fmt.Errorf("approve %s: state %s: %w", id, st, ErrNotOpen)
	}
	found := false
	for _, b := range p.Bids {
		if b.Bid.Bidder == agent.String() {
			found = true
		}
	}
	if !found {
		s.mu.Unlock()
		return fmt.Errorf("approve %s for %s: %w", id, agent, ErrNoBid)
	}
	delete(p.declined, agent.String())
	p.offering = true
	s.mu.Unlock()
	if err := s.offerLoop(p, agent.String()); err != nil {
		return fmt.Errorf("approve %s: %w", id, err)
	}
	return nil
}

// Cancel withdraws a posted task; its holder, if any, is told to stop.
func (s *Service) Cancel(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("cancel %s: %w", id, ErrClosed)
	}
	p, ok := s.posted[id]
	if !ok {
		return fmt.Errorf("cancel %s: %w", id, ErrNotFound)
	}
	if p.State.Terminal() {
		return fmt.Errorf("cancel %s: already %s: %w", id, p.State, ErrNotOpen)
	}
	s.closeTaskLocked(p, StateCancelled, "cancelled by the poster")
	return nil
}

func (s *Service) closeTaskLocked(p *posted, st State, why string) {
	holder, epoch := p.Holder, p.Epoch
	var bidders []string
	for _, b := range p.Bids {
		bidders = append(bidders, b.Bid.Bidder)
	}
	p.State = st
	p.Reason = why
	p.DoneAt = time.Now().UnixMilli()
	p.Bids = nil
	if n := len(p.History); n > 0 && p.History[n-1].End == 0 {
		p.History[n-1].End = p.DoneAt
		p.History[n-1].Outcome = string(st)
	}
	if err := s.savePostedLocked(p); err != nil {
		s.log.Error("persist close", "task", p.Task.ID, "err", err)
	}
	s.emitLocked(p.event(why))
	if holder != "" {
		s.notifyLocked([]string{holder}, &wireMsg{Op: opCancel, Poster: s.self.String(), TaskID: p.Task.ID, Epoch: epoch})
	}
	s.notifyLocked(bidders, &wireMsg{Op: opLost, Poster: s.self.String(), TaskID: p.Task.ID})
}

// onRenew extends the holder's lease.
func (s *Service) onRenew(remote peer.ID, m *wireMsg) *wireMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.posted[m.TaskID]
	if !ok {
		return reply(codeNotFound, fmt.Sprintf("task %s: not posted here", m.TaskID))
	}
	if p.State == StateCancelled || p.State == StateExpired {
		return reply(codeCancelled, fmt.Sprintf("task %s is %s", m.TaskID, p.State))
	}
	if !p.holds(remote.String(), m.Epoch) {
		return reply(codeStale, fmt.Sprintf("task %s: %s does not hold epoch %d", m.TaskID, remote, m.Epoch))
	}
	// Renewals are not persisted: a restarted poster grants a fresh lease.
	p.LeaseUntil = time.Now().Add(p.Task.Lease()).UnixMilli()
	return &wireMsg{Code: codeOK, Until: p.LeaseUntil}
}

// onResult applies a result iff it comes from the current holder for the
// current epoch; a repeat of the applied result is acknowledged again, and
// anything else is ignored as stale.
func (s *Service) onResult(remote peer.ID, m *wireMsg) *wireMsg {
	r, err := OpenResult(m.Env, s.cfg.maxResult)
	if err != nil {
		return reply(codeRejected, err.Error())
	}
	if r.Agent != remote.String() {
		return reply(codeRejected, fmt.Sprintf("result: agent %s is not the sender %s", r.Agent, remote))
	}
	if r.Poster != s.self.String() {
		return reply(codeRejected, fmt.Sprintf("result: for poster %s, this is %s", r.Poster, s.self))
	}
	return s.applyResult(r, m.Env)
}

func (s *Service) applyResult(r *Result, env []byte) *wireMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.posted[r.TaskID]
	if !ok {
		return reply(codeNotFound, fmt.Sprintf("task %s: never posted here", r.TaskID))
	}
	if p.Result != nil && p.Result.Agent == r.Agent && p.Result.Epoch == r.Epoch {
		return &wireMsg{Code: codeOK, Detail: "already applied"}
	}
	if !p.holds(r.Agent, r.Epoch) {
		s.stats.LateResults++
		s.log.Info("late or unassigned result ignored", "task", r.TaskID, "agent", r.Agent,
			"epoch", r.Epoch, "current_epoch", p.Epoch, "state", p.State)
		return reply(codeStale, fmt.Sprintf("task %s: epoch %d from %s is not the current assignment", r.TaskID, r.Epoch, r.Agent))
	}
	prevState := p.State
	s.noteAssignedLocked(p)
	rc := *r
	p.Result = &rc
	p.ResultEnv = env
	st := StateDone
	if !r.OK {
		st = StateFailed
	}
	now := time.Now()
	p.State = st
	p.DoneAt = now.UnixMilli()
	p.Reason = r.Error
	if n := len(p.History); n > 0 {
		p.History[n-1].End = p.DoneAt
		p.History[n-1].Outcome = string(st)
	}
	// The outcome enters the reputation book in the same batch as the
	// result: a crash keeps both or neither, and a result the agent must
	// retry is not counted twice.
	oc := s.rep.note(r.Agent, r.OK, now)
	if err := s.savePostedLocked(p, oc.ops()...); err != nil {
		// Not acknowledged: the agent keeps the result and retries.
		p.State, p.Result, p.ResultEnv = prevState, nil, nil
		return reply(codeRejected, "poster could not store the result; retry")
	}
	s.rep.apply(oc)
	s.stats.ResultsApplied++
	s.emitLocked(p.event("result"))
	return &wireMsg{Code: codeOK}
}

func (s *Service) reputationLocked(agent string) float64 {
	if s.cfg.reputation != nil {
		if p, err := peer.Decode(agent); err == nil {
			return s.cfg.reputation(p)
		}
		return 0
	}
	return Reputation(s.rep.counts(agent))
}

// posterTick decides best-policy windows, expires leases and deadlines.
func (s *Service) posterTick(now time.Time) {
	ms := now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.posted {
		if p.State.Terminal() {
			continue
		}
		if ms > p.Task.Deadline {
			s.closeTaskLocked(p, StateExpired, "deadline passed")
			continue
		}
		switch p.State {
		case StateAssigned:
			if ms > p.LeaseUntil {
				s.stats.LeasesExpired++
				// The failure is written with the reposted task, in one
				// batch. If that write fails the repost stands in memory
				// and so does the failure.
				rc := s.rep.note(p.Holder, false, now)
				s.rep.apply(rc)
				if n := len(p.History); n > 0 {
					p.History[n-1].End = ms
					p.History[n-1].Outcome = "lease expired"
				}
				s.log.Info("lease expired, back to the pool", "task", p.Task.ID, "holder", p.Holder, "epoch", p.Epoch)
				s.repostLocked(p, "lease expired", rc.ops()...)
			}
		case StateOpen:
			// Nobody bid: agents that joined after the posting never saw it,
			// so announce it again (a new Repost, which validators accept).
			if len(p.Bids) == 0 && !p.offering && ms-p.PostedAt > s.cfg.republish.Milliseconds() {
				s.repostLocked(p, "re-announced")
				continue
			}
			if p.Task.Policy == Best && !p.offering && p.DecideAt != 0 && ms >= p.DecideAt && len(p.Bids) > 0 {
				s.startOfferLocked(p, "")
			}
			if p.Task.Policy == First && !p.offering && len(p.Bids) > 0 {
				s.startOfferLocked(p, "")
			}
		}
	}
}

// Status returns a posted task.
func (s *Service) Status(id string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.posted[id]
	if !ok {
		return Status{}, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	return p.status(), nil
}

// List returns the tasks this node posted and has not collected, newest
// first.
func (s *Service) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.posted))
	for _, p := range s.posted {
		out = append(out, p.status())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Task.Created != out[j].Task.Created {
			return out[i].Task.Created > out[j].Task.Created
		}
		return out[i].Task.ID < out[j].Task.ID
	})
	return out
}

// Result returns the result of a finished task without removing it.
func (s *Service) Result(id string) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.posted[id]
	if !ok {
		return nil, fmt.Errorf("result %s: %w", id, ErrNotFound)
	}
	if p.Result == nil {
		return nil, fmt.Errorf("result %s (state %s): %w", id, p.State, ErrNotCollected)
	}
	r := *p.Result
	return &r, nil
}

// Collect removes a terminal task and its result from the poster's store;
// until then the poster keeps it across restarts.
func (s *Service) Collect(ctx context.Context, id string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.posted[id]
	if !ok {
		return Status{}, fmt.Errorf("collect %s: %w", id, ErrNotFound)
	}
	if !p.State.Terminal() {
		return Status{}, fmt.Errorf("collect %s: state %s: %w", id, p.State, ErrNotCollected)
	}
	if err := s.store.Delete(ctx, postedKey(id)); err != nil {
		return Status{}, fmt.Errorf("collect %s: %w", id, err)
	}
	delete(s.posted, id)
	return p.status(), nil
}

// WaitResult blocks until the task is terminal and returns its status.
func (s *Service) WaitResult(ctx context.Context, id string) (Status, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, id)
	if err != nil {
		return Status{}, err
	}
	for {
		st, err := s.Status(id)
		if err != nil {
			return Status{}, err
		}
		if st.State.Terminal() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return Status{}, fmt.Errorf("wait for %s: %w", id, ctx.Err())
		case _, ok := <-ch:
			if !ok {
				return Status{}, fmt.Errorf("wait for %s: %w", id, ErrClosed)
			}
		}
	}
}

// Persistence.

var storeDec cbor.DecMode

func init() {
	var err error
	storeDec, err = cbor.DecOptions{MaxArrayElements: 1 << 16}.DecMode()
	if err != nil {
		panic(err)
	}
}

func postedKey(id string) ds.Key { return ds.NewKey("/taskpool/posted/" + id) }

// savePostedLocked writes a task's record, and also in the same batch.
func (s *Service) savePostedLocked(p *posted, also ...storeOp) error {
	b, err := encMode.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", p.Task.ID, err)
	}
	ops := append([]storeOp{{key: postedKey(p.Task.ID), val: b}}, also...)
	if err := s.store.Write(s.ctx, ops...); err != nil {
		return fmt.Errorf("store task %s: %w", p.Task.ID, err)
	}
	return nil
}

func (s *Service) load(ctx context.Context) error {
	entries, err := s.store.Query(ctx, query.Query{Prefix: "/taskpool/"})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	now := time.Now()
	var book []repEntry
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Key, "/taskpool/posted/"):
			var p posted
			if err := storeDec.Unmarshal(e.Value, &p); err != nil {
				s.log.Error("skip unreadable task record", "key", e.Key, "err", err)
				continue
			}
			switch p.State {
			case StateOffered:
				// The offer's fate is unknown; its epoch is burnt.
				p.State, p.Holder = StateOpen, ""
			case StateAssigned:
				grace := s.cfg.restartGrace
				if grace == 0 {
					grace = p.Task.Lease()
				}
				p.LeaseUntil = now.Add(grace).UnixMilli()
			}
			s.posted[p.Task.ID] = &p
		case strings.HasPrefix(e.Key, "/taskpool/held/"):
			var h held
			if err := storeDec.Unmarshal(e.Value, &h); err != nil {
				s.log.Error("skip unreadable held record", "key", e.Key, "err", err)
				continue
			}
			if h.ResultEnv == nil {
				// Work in progress cannot be resumed after a restart; the
				// poster's lease runs out and it reassigns the task.
				_ = s.store.Delete(ctx, ds.NewKey(e.Key))
				continue
			}
			s.held[h.key()] = &h
		case strings.HasPrefix(e.Key, repPrefix):
			r, err := decodeRep(e.Key, e.Value)
			if err != nil {
				// The agent starts again from an unknown agent's score; its
				// next outcome overwrites the record.
				s.log.Warn("skip unreadable reputation record", "key", e.Key, "err", err)
				continue
			}
			book = append(book, r)
		}
	}
	for _, a := range s.rep.load(book) {
		// Over the bound (it was lowered since): drop the oldest.
		if err := s.store.Delete(ctx, repKey(a)); err != nil {
			s.log.Warn("drop reputation record over the limit", "agent", a, "err", err)
		}
	}
	return nil
}
