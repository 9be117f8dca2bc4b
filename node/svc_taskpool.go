package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/taskpool"
)

// startTaskpool starts the task pool service and registers its API:
// /v1/tasks/... for posters and /v1/pools/... for agents.
func (n *Node) startTaskpool(ctx context.Context) error {
	opts := []taskpool.Option{taskpool.WithLogger(n.Logger())}
	if d := n.DHT(); d != nil {
		opts = append(opts, taskpool.WithRouting(d))
	}
	svc, err := taskpool.New(ctx, n.Host(), n.PubSub(), n.Store(), opts...)
	if err != nil {
		return err
	}
	tp := &taskpoolAPI{n: n, svc: svc, agents: map[string]*extAgent{}}
	n.addService("taskpool", tp)
	// Poster-side state changes go to the node's event bus too.
	evs, err := svc.Watch(n.Context(), "")
	if err == nil {
		go func() {
			for ev := range evs {
				n.Events().Publish(oam.Event{Type: "task", Data: ev})
			}
		}()
	}
	if n.API() != nil {
		tp.register()
	}
	return nil
}

// Taskpool is the node's task pool service (nil before start).
func (n *Node) Taskpool() *taskpool.Service {
	tp, _ := n.service("taskpool").(*taskpoolAPI)
	if tp == nil {
		return nil
	}
	return tp.svc
}

// TaskPostRequest is the body of POST /v1/tasks. Durations are Go
// duration strings ("30s", "5m").
type TaskPostRequest struct {
	ID        string   `json:"id,omitempty"`
	Pool      string   `json:"pool"`
	Kind      string   `json:"kind"`
	Skill     string   `json:"skill,omitempty"`
	Input     []byte   `json:"input,omitempty"` // base64 in JSON
	InputCID  string   `json:"input_cid,omitempty"`
	Deadline  string   `json:"deadline,omitempty"`
	MaxPrice  float64  `json:"max_price,omitempty"`
	Tier      string   `json:"tier,omitempty"`
	Policy    string   `json:"policy,omitempty"`
	Eligible  []string `json:"eligible,omitempty"`
	Lease     string   `json:"lease,omitempty"`
	BidWindow string   `json:"bid_window,omitempty"`
}

// Spec converts the request, naming the field that is wrong.
func (r TaskPostRequest) Spec() (taskpool.TaskSpec, error) {
	spec := taskpool.TaskSpec{ID: r.ID, Pool: r.Pool, Kind: r.Kind, Skill: r.Skill, Input: r.Input,
		InputCID: r.InputCID, MaxPrice: r.MaxPrice}
	var err error
	if spec.Tier, err = taskpool.ParseTier(r.Tier); err != nil {
		return spec, err
	}
	if spec.Policy, err = taskpool.ParsePolicy(r.Policy); err != nil {
		return spec, err
	}
	for _, f := range []struct {
		name string
		s    string
		d    *time.Duration
	}{{"deadline", r.Deadline, &spec.Deadline}, {"lease", r.Lease, &spec.Lease}, {"bid_window", r.BidWindow, &spec.BidWindow}} {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil || d <= 0 {
			return spec, fmt.Errorf("%s: %q, want a positive duration such as 30s", f.name, f.s)
		}
		*f.d = d
	}
	for i, e := range r.Eligible {
		p, err := peer.Decode(e)
		if err != nil {
			return spec, fmt.Errorf("eligible[%d]: %q is not a peer id", i, e)
		}
		spec.Eligible = append(spec.Eligible, p)
	}
	return spec, nil
}

// TaskApproveRequest is the body of POST /v1/tasks/{id}/approve.
type TaskApproveRequest struct {
	Peer string `json:"peer"`
}

// AgentRegisterRequest is the body of POST /v1/pools/{pool}/agents: an
// external agent whose bidding the node does (Manual false) or that bids
// itself through .../bids (Manual true).
type AgentRegisterRequest struct {
	Skill       string   `json:"skill,omitempty"`
	Kinds       []string `json:"kinds,omitempty"`
	Price       float64  `json:"price,omitempty"`
	ExpectedMs  int64    `json:"expected_ms,omitempty"`
	Capacity    int      `json:"capacity,omitempty"`
	Credentials []string `json:"credentials,omitempty"`
	Manual      bool     `json:"manual,omitempty"`
}

// AgentRegistered is the answer to an agent registration.
type AgentRegistered struct {
	AgentID string `json:"agent_id"`
	PeerID  string `json:"peer_id"`
}

// AgentBidRequest is the body of POST /v1/pools/{pool}/agents/{aid}/bids.
type AgentBidRequest struct {
	Poster     string  `json:"poster"`
	TaskID     string  `json:"task_id"`
	Price      float64 `json:"price"`
	ExpectedMs int64   `json:"expected_ms"`
}

// AgentResultRequest is the body of POST /v1/pools/{pool}/agents/{aid}/results.
type AgentResultRequest struct {
	Poster string `json:"poster"`
	TaskID string `json:"task_id"`
	OK     bool   `json:"ok"`
	Output []byte `json:"output,omitempty"` // base64 in JSON
	Error  string `json:"error,omitempty"`
}

// taskpoolAPI owns the service and the external agents bridged to the API.
type taskpoolAPI struct {
	n   *Node
	svc *taskpool.Service

	mu     sync.Mutex
	agents map[string]*extAgent
	seq    int
}

// Close stops the external agents, then the service.
func (tp *taskpoolAPI) Close() error {
	tp.mu.Lock()
	as := tp.agents
	tp.agents = map[string]*extAgent{}
	tp.mu.Unlock()
	for _, a := range as {
		a.close()
	}
	return tp.svc.Close()
}

// extAgent bridges a taskpool.Agent to an API client: tasks it wins are
// streamed to the client, which posts the result back.
type extAgent struct {
	id    string
	pool  string
	agent *taskpool.Agent

	mu   sync.Mutex
	jobs map[string]*extJob
	subs map[chan taskpool.Task]struct{}
	once sync.Once
}

type extJob struct {
	task taskpool.Task
	done chan AgentResultRequest
}

func (a *extAgent) handler(ctx context.Context, t taskpool.Task) ([]byte, error) {
	j := &extJob{task: t, done: make(chan AgentResultRequest, 1)}
	k := t.Poster + "/" + t.ID
	a.mu.Lock()
	a.jobs[k] = j
	for ch := range a.subs {
		select {
		case ch <- t:
		default:
		}
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.jobs, k)
		a.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-j.done:
		if !r.OK {
			if r.Error == "" {
				r.Error = "agent reported failure"
			}
			return nil, errors.New(r.Error)
		}
		return r.Output, nil
	}
}

func (a *extAgent) close() {
	a.once.Do(func() { _ = a.agent.Close() })
}

func (tp *taskpoolAPI) register() {
	api := tp.n.API()
	api.Handle("POST /v1/tasks", tp.post)
	api.Handle("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, tp.svc.List())
	})
	// Not under /v1/tasks/, where it would shadow a task named "reputation".
	api.Handle("GET /v1/reputation", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, tp.svc.Reputations())
	})
	api.Handle("GET /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		st, err := tp.svc.Status(r.PathValue("id"))
		if err != nil {
			oam.WriteError(w, statusOf(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, st)
	})
	api.Handle("GET /v1/tasks/{id}/watch", tp.watch)
	api.Handle("POST /v1/tasks/{id}/approve", func(w http.ResponseWriter, r *http.Request) {
		var req TaskApproveRequest
		if err := oam.ReadJSON(r, 4<<10, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		p, err := peer.Decode(req.Peer)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("peer: %q is not a peer id", req.Peer))
			return
		}
		if err := tp.svc.Approve(r.Context(), r.PathValue("id"), p); err != nil {
			oam.WriteError(w, statusOf(err), err)
			return
		}
		st, _ := tp.svc.Status(r.PathValue("id"))
		oam.WriteJSON(w, http.StatusOK, st)
	})
	api.Handle("POST /v1/tasks/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if err := tp.svc.Cancel(r.Context(), r.PathValue("id")); err != nil {
			oam.WriteError(w, statusOf(err), err)
			return
		}
		st, _ := tp.svc.Status(r.PathValue("id"))
		oam.WriteJSON(w, http.StatusOK, st)
	})
	api.Handle("GET /v1/tasks/{id}/result", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		res, err := tp.svc.Result(id)
		if err != nil {
			oam.WriteError(w, statusOf(err), err)
			return
		}
		if c, _ := strconv.ParseBool(r.URL.Query().Get("collect")); c {
			if _, err := tp.svc.Collect(r.Context(), id); err != nil {
				oam.WriteError(w, statusOf(err), err)
				return
			}
		}
		oam.WriteJSON(w, http.StatusOK, res)
	})
	api.Handle("GET /v1/pools/{pool}/postings", func(w http.ResponseWriter, r *http.Request) {
		ch, err := tp.svc.Postings(r.Context(), r.PathValue("pool"))
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		oam.ServeSSE(w, r, relay(r.Context(), ch, "posting"))
	})
	api.Handle("POST /v1/pools/{pool}/agents", tp.registerAgent)
	api.Handle("DELETE /v1/pools/{pool}/agents/{aid}", func(w http.ResponseWriter, r *http.Request) {
		a, err := tp.agent(r)
		if err != nil {
			oam.WriteError(w, http.StatusNotFound, err)
			return
		}
		tp.removeAgent(a)
		oam.WriteJSON(w, http.StatusOK, map[string]string{"agent_id": a.id})
	})
	api.Handle("GET /v1/pools/{pool}/agents/{aid}/work", tp.work)
	api.Handle("POST /v1/pools/{pool}/agents/{aid}/bids", func(w http.ResponseWriter, r *http.Request) {
		a, err := tp.agent(r)
		if err != nil {
			oam.WriteError(w, http.StatusNotFound, err)
			return
		}
		var req AgentBidRequest
		if err := oam.ReadJSON(r, 4<<10, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		p, err := peer.Decode(req.Poster)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("poster: %q is not a peer id", req.Poster))
			return
		}
		if err := a.agent.BidOn(r.Context(), p, req.TaskID, req.Price, time.Duration(req.ExpectedMs)*time.Millisecond); err != nil {
			oam.WriteError(w, statusOf(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, map[string]string{"status": "pending"})
	})
	api.Handle("POST /v1/pools/{pool}/agents/{aid}/results", func(w http.ResponseWriter, r *http.Request) {
		a, err := tp.agent(r)
		if err != nil {
			oam.WriteError(w, http.StatusNotFound, err)
			return
		}
		var req AgentResultRequest
		if err := oam.ReadJSON(r, taskpool.DefaultMaxResult*2, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		a.mu.Lock()
		j, ok := a.jobs[req.Poster+"/"+req.TaskID]
		a.mu.Unlock()
		if !ok {
			oam.WriteError(w, http.StatusNotFound, fmt.Errorf("task %s from %s: not held by agent %s (never assigned, or its lease was lost)", req.TaskID, req.Poster, a.id))
			return
		}
		select {
		case j.done <- req:
		default:
			oam.WriteError(w, http.StatusConflict, fmt.Errorf("task %s: result already submitted", req.TaskID))
			return
		}
		oam.WriteJSON(w, http.StatusOK, map[string]string{"status": "accepted"})
	})
}

func (tp *taskpoolAPI) post(w http.ResponseWriter, r *http.Request) {
	var req TaskPostRequest
	if err := oam.ReadJSON(r, 2*taskpool.MaxInlineInput, &req); err != nil {
		oam.WriteError(w, http.StatusBadRequest, err)
		return
	}
	spec, err := req.Spec()
	if err != nil {
		oam.WriteError(w, http.StatusBadRequest, err)
		return
	}
	t, err := tp.svc.Post(r.Context(), spec)
	if err != nil {
		oam.WriteError(w, statusOf(err), err)
		return
	}
	oam.WriteJSON(w, http.StatusOK, t)
}

// watch streams a task's events and ends after a terminal one.
func (tp *taskpoolAPI) watch(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, err := tp.svc.Watch(ctx, r.PathValue("id"))
	if err != nil {
		oam.WriteError(w, statusOf(err), err)
		return
	}
	out := make(chan oam.Event)
	go func() {
		defer close(out)
		for ev := range ch {
			select {
			case out <- oam.Event{Type: "task", Time: ev.Time, Data: ev}:
			case <-ctx.Done():
				return
			}
			if ev.State.Terminal() {
				return
			}
		}
	}()
	oam.ServeSSE(w, r, out)
}

func (tp *taskpoolAPI) registerAgent(w http.ResponseWriter, r *http.Request) {
	var req AgentRegisterRequest
	if err := oam.ReadJSON(r, 16<<10, &req); err != nil {
		oam.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if req.Capacity < 0 || req.Capacity > 1024 {
		oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("capacity: %d, want 1 to 1024", req.Capacity))
		return
	}
	tp.mu.Lock()
	tp.seq++
	a := &extAgent{id: "a" + strconv.Itoa(tp.seq), pool: r.PathValue("pool"),
		jobs: map[string]*extJob{}, subs: map[chan taskpool.Task]struct{}{}}
	tp.mu.Unlock()
	cfg := taskpool.AgentConfig{Pool: a.pool, Skill: req.Skill, Kinds: req.Kinds, Price: req.Price,
		Expected: time.Duration(req.ExpectedMs) * time.Millisecond, Capacity: req.Capacity,
		Credentials: req.Credentials, Manual: req.Manual, Handler: a.handler}
	if req.Manual {
		cfg.Capacity = max(cfg.Capacity, 64)
	}
	ag, err := tp.svc.RunAgent(cfg)
	if err != nil {
		oam.WriteError(w, http.StatusBadRequest, err)
		return
	}
	a.agent = ag
	tp.mu.Lock()
	tp.agents[a.id] = a
	tp.mu.Unlock()
	oam.WriteJSON(w, http.StatusOK, AgentRegistered{AgentID: a.id, PeerID: tp.n.ID().String()})
}

func (tp *taskpoolAPI) agent(r *http.Request) (*extAgent, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	a, ok := tp.agents[r.PathValue("aid")]
	if !ok || a.pool != r.PathValue("pool") {
		return nil, fmt.Errorf("agent %q on pool %q: not registered (POST /v1/pools/%s/agents first)", r.PathValue("aid"), r.PathValue("pool"), r.PathValue("pool"))
	}
	return a, nil
}

func (tp *taskpoolAPI) removeAgent(a *extAgent) {
	tp.mu.Lock()
	delete(tp.agents, a.id)
	tp.mu.Unlock()
	a.close()
}

// work streams the tasks the agent won; when the client goes away the
// agent is removed, and tasks it held go back to their pools when their
// leases run out.
func (tp *taskpoolAPI) work(w http.ResponseWriter, r *http.Request) {
	a, err := tp.agent(r)
	if err != nil {
		oam.WriteError(w, http.StatusNotFound, err)
		return
	}
	defer tp.removeAgent(a)
	ch := make(chan taskpool.Task, 256)
	a.mu.Lock()
	for _, j := range a.jobs {
		ch <- j.task
	}
	a.subs[ch] = struct{}{}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.subs, ch)
		a.mu.Unlock()
	}()
	oam.ServeSSE(w, r, relay(r.Context(), ch, "task"))
}

// relay turns a channel of values into SSE events until ctx ends.
func relay[T any](ctx context.Context, in <-chan T, typ string) <-chan oam.Event {
	out := make(chan oam.Event)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case v, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- oam.Event{Type: typ, Time: time.Now().UTC(), Data: v}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, taskpool.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, taskpool.ErrDuplicateTask), errors.Is(err, taskpool.ErrNotOpen),
		errors.Is(err, taskpool.ErrNotCollected), errors.Is(err, taskpool.ErrBidRefused):
		return http.StatusConflict
	case errors.Is(err, taskpool.ErrNoBid), errors.Is(err, taskpool.ErrDeclined):
		return http.StatusConflict
	}
	return http.StatusBadRequest
}
