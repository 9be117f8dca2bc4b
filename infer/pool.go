package infer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/taskpool"
)

// Queries through a task pool: instead of choosing a host, a client posts
// the query as a task of kind PoolKind and the hosts' agents bid with
// their models' price and latency. The answer is a CBOR Response as the
// task's signed result, kept by the host while the client is offline and
// by the client until it is read.

// PoolKind is the task kind of an inference query.
const PoolKind = "infer"

// DefaultPool is the pool hosts serve and clients post to by default.
const DefaultPool = "infer"

// MaxPoolInputBytes bounds the input of a pool query: it travels inline in
// the posting.
const MaxPoolInputBytes = taskpool.MaxInlineInput

// poolPoll is how often a host compares its agents with the models it
// serves (a model published later gets its skill's agent within this).
const poolPoll = 2 * time.Second

// defaultBidWindow is how long a pool query collects bids by default.
const defaultBidWindow = 250 * time.Millisecond

// ErrPending is wrapped when a pool query's result has not arrived yet;
// the error is a *PendingError naming the task to collect later.
var ErrPending = errors.New("query still pending in the task pool")

// ErrNotQuery is returned when a task id names a task that is not an
// inference query.
var ErrNotQuery = errors.New("not an inference query")

// ErrNoPool is returned by pool calls when the node runs no task pool.
var ErrNoPool = errors.New("this node runs no task pool service")

// PendingError says which task to collect later.
type PendingError struct {
	TaskID string
	State  taskpool.State
	Err    error // why the wait ended (the context's error)
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("query task %s is %s: %v; its result is kept, collect it later with `daitn infer --task %s`",
		e.TaskID, e.State, e.Err, e.TaskID)
}

// Is makes errors.Is(err, ErrPending) hold.
func (e *PendingError) Is(target error) bool { return target == ErrPending }

func (e *PendingError) Unwrap() error { return e.Err }

// WithTaskPool lets the service use the node's task pool service (get is
// asked on every use: the pool service may start after this one). With a
// non-empty serve pool the host runs one agent on it per skill of the
// models it serves; "" serves no pool. Clients can post to any pool.
func WithTaskPool(get func() *taskpool.Service, serve string) Option {
	return func(c *config) error {
		if serve != "" && (len(serve) > 64 || strings.ContainsAny(serve, "/ \t\n")) {
			return fmt.Errorf("infer option pool=%q: want a pool name of at most 64 characters without / or spaces, or \"\" for none", serve)
		}
		c.taskpool, c.servePool = get, serve
		return nil
	}
}

// PoolSpec is a query posted to a task pool. Zero fields take defaults:
// pool DefaultPool, policy best with a 250ms bid window, the pool
// service's default deadline (10 minutes), bronze tier, any price.
type PoolSpec struct {
	Pool      string
	Skill     string
	MaxPrice  float64
	Policy    taskpool.Policy
	BidWindow time.Duration
	Deadline  time.Duration
	Tier      taskpool.Tier
}

func (s *Service) pool() (*taskpool.Service, error) {
	if s.cfg.taskpool == nil {
		return nil, ErrNoPool
	}
	tp := s.cfg.taskpool()
	if tp == nil {
		return nil, ErrNoPool
	}
	return tp, nil
}

// PostQuery posts input as an inference task and returns its id at once;
// PoolResult waits for the answer.
func (s *Service) PostQuery(ctx context.Context, spec PoolSpec, input []byte) (string, error) {
	if err := checkInput(input); err != nil {
		return "", err
	}
	if len(input) > MaxPoolInputBytes {
		return "", fmt.Errorf("query: %w: input is %d bytes, a pool query carries at most %d inline", ErrBadInput, len(input), MaxPoolInputBytes)
	}
	if spec.Skill == "" {
		return "", fmt.Errorf("query: %w: a pool query needs a skill", ErrBadInput)
	}
	tp, err := s.pool()
	if err != nil {
		return "", err
	}
	if spec.Pool == "" {
		spec.Pool = DefaultPool
	}
	if spec.Policy == "" {
		spec.Policy = taskpool.Best
	}
	if spec.Policy == taskpool.Best && spec.BidWindow == 0 {
		spec.BidWindow = defaultBidWindow
	}
	t, err := tp.Post(ctx, taskpool.TaskSpec{Pool: spec.Pool, Kind: PoolKind, Skill: spec.Skill, Input: input,
		MaxPrice: spec.MaxPrice, Policy: spec.Policy, BidWindow: spec.BidWindow, Deadline: spec.Deadline, Tier: spec.Tier})
	if err != nil {
		return "", fmt.Errorf("query %q via pool %s: %w", spec.Skill, spec.Pool, err)
	}
	return t.ID, nil
}

// QueryViaPool posts input to a task pool, waits for the agent's answer and
// returns it. If ctx ends first the error is a *PendingError with the task
// id: the node keeps the task and its result until PoolResult reads it.
func (s *Service) QueryViaPool(ctx context.Context, spec PoolSpec, input []byte) (*Result, error) {
	id, err := s.PostQuery(ctx, spec, input)
	if err != nil {
		return nil, err
	}
	return s.PoolResult(ctx, id)
}

// PoolResult waits (until ctx ends; an ended ctx just looks) for the task
// of an earlier pool query and returns its answer, or why it failed. A
// finished task is then removed from the node (collected); a pending one
// gives a *PendingError.
func (s *Service) PoolResult(ctx context.Context, id string) (*Result, error) {
	tp, err := s.pool()
	if err != nil {
		return nil, err
	}
	st, err := tp.Status(id)
	if err != nil {
		return nil, fmt.Errorf("query task %s: %w", id, err)
	}
	if st.Task.Kind != PoolKind {
		return nil, fmt.Errorf("task %s is of kind %q: %w (kind %q)", id, st.Task.Kind, ErrNotQuery, PoolKind)
	}
	if !st.State.Terminal() {
		if st, err = tp.WaitResult(ctx, id); err != nil {
			if ctx.Err() != nil {
				cur, _ := tp.Status(id)
				return nil, &PendingError{TaskID: id, State: cur.State, Err: ctx.Err()}
			}
			return nil, fmt.Errorf("query task %s: %w", id, err)
		}
	}
	res, err := poolAnswer(st)
	if _, cerr := tp.Collect(context.WithoutCancel(ctx), id); cerr != nil {
		s.log.Warn("infer: collect answered pool query", "task", id, "err", cerr)
	}
	return res, err
}

// poolAnswer turns a terminal task into the query's result or error.
func poolAnswer(st taskpool.Status) (*Result, error) {
	id := st.Task.ID
	r := st.Result
	if st.State != taskpool.StateDone || r == nil || !r.OK {
		reason := st.Reason
		if r != nil && r.Error != "" {
			reason = r.Error
		}
		if reason == "" {
			reason = "no reason given"
		}
		err := fmt.Errorf("query task %s %s: %s", id, st.State, reason)
		if status, rest, ok := strings.Cut(reason, ": "); ok && Status(status).valid() && Status(status) != StatusOK {
			err = fmt.Errorf("query task %s %s (agent %s): %w", id, st.State, st.Holder, &HostError{Status: Status(status), Reason: rest})
		}
		return nil, err
	}
	host, err := peer.Decode(r.Agent)
	if err != nil {
		return nil, fmt.Errorf("query task %s: result agent %q: %w", id, r.Agent, err)
	}
	resp, err := UnmarshalResponse(r.Output)
	if err != nil {
		return nil, fmt.Errorf("query task %s: answer from %s: %w", id, host, err)
	}
	if resp.Status != StatusOK {
		return nil, fmt.Errorf("query task %s: answer from %s has status %s", id, host, resp.Status)
	}
	took := time.Duration(st.DoneAt-st.PostedAt) * time.Millisecond
	return &Result{
		Class: resp.Class, Confidence: resp.Probs[resp.Class], Probs: resp.Probs, Model: resp.Model, Version: resp.Version, Name: resp.Name,
		Host: host, HostTime: time.Duration(resp.HostMicros) * time.Microsecond, Took: took, Task: id,
		Tried: []Attempt{{Host: host, Model: resp.Model, Status: StatusOK, Took: took}},
	}, nil
}

// handleTask answers one pool task with the host's best model for the
// task's skill. Unlike a stream query it waits for a query slot (the
// agent's capacity already bounds how many wait) rather than answering
// busy. A refusal becomes the failed result's reason, "status: reason".
func (s *Service) handleTask(ctx context.Context, t taskpool.Task) ([]byte, error) {
	if len(t.Input) == 0 {
		return nil, fmt.Errorf("%s: the task has no inline input (an inference query carries its input in the posting)", StatusBadInput)
	}
	poster, _ := peer.Decode(t.Poster)
	req := &Request{Skill: t.Skill, Input: t.Input, Format: DetectFormat(t.Input)}
	var resp *Response
	if err := req.Validate(); err != nil {
		s.counters.badInput.Add(1)
		resp = &Response{Status: StatusBadInput, Error: clip(err.Error())}
	} else {
		resp = s.serveWith(ctx, poster, req, s.admitTask)
	}
	if resp.Status != StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, resp.Error)
	}
	return MarshalResponse(resp)
}

// admitTask takes a query slot, waiting as long as ctx allows.
func (s *Service) admitTask(ctx context.Context) (release func(), ok bool) {
	select {
	case s.slots <- struct{}{}:
		s.take()
		return s.release, true
	case <-ctx.Done():
		return nil, false
	}
}

// poolOffer is what one skill's agent bids: the best model's (the one
// resolve picks) price and latency.
type poolOffer struct {
	price    float64
	expected time.Duration
	acc      float64
}

// offers lists the skills of the node's own models with what to bid.
func (s *Service) offers() map[string]poolOffer {
	out := map[string]poolOffer{}
	for _, sd := range s.models.cat.Own() {
		if sd.Kind != descriptors.KindModel || sd.Model == nil {
			continue
		}
		m := sd.Model
		o := poolOffer{expected: time.Duration(m.LatencyMs * float64(time.Millisecond)), acc: accuracy(m)}
		if m.Price != nil {
			o.price = m.Price.Amount
		}
		for _, sk := range m.Skills {
			if sk == "" || len(sk) > maxSkill {
				continue
			}
			if cur, ok := out[sk]; !ok || o.acc > cur.acc {
				out[sk] = o
			}
		}
	}
	return out
}

type poolAgent struct {
	a     *taskpool.Agent
	tp    *taskpool.Service
	offer poolOffer
}

// poolLoop keeps one agent per served skill on the serve pool, checking
// every poolPoll; it owns the agents and closes them when it ends.
func (s *Service) poolLoop() {
	defer s.wg.Done()
	agents := map[string]*poolAgent{}
	defer func() {
		for _, pa := range agents {
			_ = pa.a.Close()
		}
	}()
	tk := time.NewTicker(poolPoll)
	defer tk.Stop()
	for {
		s.syncAgents(agents)
		select {
		case <-s.ctx.Done():
			return
		case <-tk.C:
		}
	}
}

func (s *Service) syncAgents(agents map[string]*poolAgent) {
	tp, err := s.pool()
	if err != nil {
		return // the pool service has not started yet
	}
	want := s.offers()
	for sk, pa := range agents {
		if o, ok := want[sk]; ok && pa.tp == tp && o == pa.offer {
			continue
		}
		_ = pa.a.Close()
		delete(agents, sk)
	}
	for sk, o := range want {
		if _, ok := agents[sk]; ok {
			continue
		}
		a, err := tp.RunAgent(taskpool.AgentConfig{
			Pool: s.cfg.servePool, Skill: sk, Kinds: []string{PoolKind}, Price: o.price, Expected: o.expected,
			Capacity: s.cfg.concurrent, Handler: s.handleTask,
		})
		if err != nil {
			if !errors.Is(err, taskpool.ErrClosed) {
				s.log.Warn("infer: cannot run pool agent", "pool", s.cfg.servePool, "skill", sk, "err", err)
			}
			continue
		}
		agents[sk] = &poolAgent{a: a, tp: tp, offer: o}
		s.log.Info("infer: serving pool", "pool", s.cfg.servePool, "skill", sk, "price", o.price, "expected", o.expected)
	}
}
