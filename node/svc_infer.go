package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/routing"
	"github.com/daitn/daitn/taskpool"
)

// startInfer serves /daitn/infer/1.0.0 for this node's own models (weights
// from the transfer store) and answers POST /v1/infer by asking the best
// reachable host. Settings come from [services.infer] in config.toml:
// max_in_flight (default: the number of CPUs), queue (default: as many),
// queue_wait ("1s"), max_loaded (8 models in memory), pool ("infer": the
// task pool whose inference tasks this node's models bid on, one agent per
// skill; "" bids on none). It needs the
// descriptors and transfer services; the live map, when it runs, is what
// queries by skill are planned on.
func (n *Node) startInfer(ctx context.Context) error {
	desc, xfer := n.Descriptors(), n.Transfer()
	if desc == nil || xfer == nil {
		n.Logger().Warn("infer service not started: it needs the descriptors and transfer services",
			"descriptors", desc != nil, "transfer", xfer != nil)
		return nil
	}
	opts := []infer.Option{infer.WithLogger(n.Logger())}
	if ov := n.Overlay(); ov != nil {
		// Touch asks for a beacon soon (rate-limited by the overlay), so
		// other clients see this host's queue grow before they pile on.
		opts = append(opts, infer.WithMap(ov.Snapshot), infer.WithLoadChanged(ov.Touch))
	}
	set := n.cfg.Services["infer"]
	inflight, queue := 0, -1
	for _, s := range []struct {
		key string
		dst *int
	}{{"max_in_flight", &inflight}, {"queue", &queue}} {
		if v, ok, err := inferInt(set, s.key); err != nil {
			return err
		} else if ok {
			*s.dst = v
		}
	}
	if inflight > 0 || queue >= 0 {
		if inflight <= 0 {
			inflight = runtime.NumCPU()
		}
		if queue < 0 {
			queue = inflight
		}
		opts = append(opts, infer.WithLimits(inflight, queue))
	}
	if v, ok, err := inferInt(set, "max_loaded"); err != nil {
		return err
	} else if ok {
		opts = append(opts, infer.WithMaxLoaded(v))
	}
	if v, ok := set["queue_wait"]; ok {
		s, isStr := v.(string)
		d, err := time.ParseDuration(s)
		if !isStr || err != nil {
			return fmt.Errorf("config services.infer.queue_wait=%v: want a duration like \"1s\"", v)
		}
		opts = append(opts, infer.WithQueueWait(d))
	}
	pool := infer.DefaultPool
	if v, ok := set["pool"]; ok {
		p, isStr := v.(string)
		if !isStr {
			return fmt.Errorf("config services.infer.pool=%v: want a pool name like \"infer\", or \"\" for none", v)
		}
		pool = p
	}
	// The task pool service starts after this one: it is looked up on use.
	opts = append(opts, infer.WithTaskPool(n.Taskpool, pool))
	svc, err := infer.New(ctx, n.Host(), desc, xfer, opts...)
	if err != nil {
		return err
	}
	n.addService("infer", svc)
	if n.API() != nil {
		registerInferAPI(n, svc)
	}
	if reg := n.Registry(); reg != nil {
		registerInferMetrics(reg, svc)
	}
	return nil
}

func inferInt(m map[string]any, key string) (int, bool, error) {
	v, ok := m[key]
	if !ok {
		return 0, false, nil
	}
	switch x := v.(type) {
	case int64:
		return int(x), true, nil
	case int:
		return x, true, nil
	}
	return 0, false, fmt.Errorf("config services.infer.%s=%v: want a whole number", key, v)
}

// Infer is the node's inference service (nil before start).
func (n *Node) Infer() *infer.Service {
	s, _ := n.service("infer").(*infer.Service)
	return s
}

// InferRequest is the body of POST /v1/infer. Either skill (the planner
// picks the model, with failover) or model (a descriptor slot or version
// id: ask its host) must be given. Input is the image (PNG or JPEG, 28x28)
// or raw little-endian float32 values, base64 in JSON.
type InferRequest struct {
	Skill       string  `json:"skill,omitempty"`
	MinAccuracy float64 `json:"min_accuracy,omitempty"`
	MaxLatency  string  `json:"max_latency,omitempty"` // a duration, e.g. "200ms"
	MaxPrice    float64 `json:"max_price,omitempty"`
	AnyPrice    bool    `json:"any_price,omitempty"`
	Model       string  `json:"model,omitempty"`
	Host        string  `json:"host,omitempty"` // with model or skill: ask this peer only
	Input       []byte  `json:"input"`
	// Pool posts the query (by skill) to this task pool instead: the
	// hosts' agents bid and the answer is kept until read, even if this
	// node goes offline meanwhile. Policy (best, first or approve) and
	// Deadline (a duration) shape the task; Detach answers 202 with the
	// task id at once, to be read from GET /v1/infer/tasks/{id}.
	Pool     string `json:"pool,omitempty"`
	Policy   string `json:"policy,omitempty"`
	Deadline string `json:"deadline,omitempty"`
	Detach   bool   `json:"detach,omitempty"`
}

// InferPending is the answer (202) of a detached pool query, or of
// GET /v1/infer/tasks/{id} while the task has no result yet.
type InferPending struct {
	Task  string `json:"task"`
	State string `json:"state,omitempty"`
}

// InferResponse is the answer of POST /v1/infer.
type InferResponse = infer.Result

// InferError is the error answer of POST /v1/infer: the reason and, when
// hosts were asked, who and what each said.
type InferError struct {
	Error string          `json:"error"`
	Tried []infer.Attempt `json:"tried,omitempty"`
}

// maxInferBody fits the largest input in base64 and the other fields.
const maxInferBody = infer.MaxInputBytes*4/3 + 8<<10

func inferStatus(err error) int {
	switch {
	case errors.Is(err, infer.ErrBadInput), errors.Is(err, infer.ErrNotQuery):
		return http.StatusBadRequest
	case errors.Is(err, infer.ErrNoModel):
		return http.StatusUnprocessableEntity
	case errors.Is(err, infer.ErrBusy):
		return http.StatusServiceUnavailable
	case errors.Is(err, taskpool.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, infer.ErrNoPool):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func registerInferAPI(n *Node, svc *infer.Service) {
	n.API().Handle("POST /v1/infer", func(w http.ResponseWriter, r *http.Request) {
		var req InferRequest
		if err := oam.ReadJSON(r, maxInferBody, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("%w (the input may be at most %d bytes)", err, infer.MaxInputBytes))
			return
		}
		spec := routing.QuerySpec{Skill: req.Skill, MinAccuracy: req.MinAccuracy, MaxPrice: req.MaxPrice, AnyPrice: req.AnyPrice}
		if req.MaxLatency != "" {
			d, err := time.ParseDuration(req.MaxLatency)
			if err != nil || d < 0 {
				oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("max_latency=%q: want a duration like 200ms", req.MaxLatency))
				return
			}
			spec.MaxLatency = d
		}
		var (
			res *infer.Result
			err error
		)
		if req.Pool != "" {
			inferViaPool(n, svc, w, r, req)
			return
		}
		switch {
		case req.Host != "":
			var p peer.ID
			if p, err = peer.Decode(req.Host); err != nil {
				oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("host %q: not a peer ID: %w", req.Host, err))
				return
			}
			if req.Model == "" && req.Skill == "" {
				oam.WriteError(w, http.StatusBadRequest, errors.New("with host, give model or skill"))
				return
			}
			res, err = svc.Ask(r.Context(), p, req.Model, req.Skill, req.Input)
		case req.Model != "":
			res, err = svc.QueryModel(r.Context(), req.Model, req.Input)
		case req.Skill != "":
			res, err = svc.Query(r.Context(), spec, req.Input)
		default:
			oam.WriteError(w, http.StatusBadRequest, errors.New("give skill (e.g. classify-digits) or model"))
			return
		}
		if err != nil {
			out := InferError{Error: err.Error()}
			var qe *infer.QueryError
			if errors.As(err, &qe) {
				out.Tried = qe.Tried
			}
			n.Events().Publish(oam.Event{Type: "infer.failed", Data: out})
			oam.WriteJSON(w, inferStatus(err), out)
			return
		}
		n.Events().Publish(oam.Event{Type: "infer.answered", Data: map[string]any{
			"skill": req.Skill, "model": res.Model, "host": res.Host, "class": res.Class, "took_ns": res.Took, "attempts": len(res.Tried)}})
		oam.WriteJSON(w, http.StatusOK, res)
	})
	// A pool query's answer: ?wait=DURATION waits that long for it (at
	// most 10m); 202 with the task's state while it has none.
	n.API().Handle("GET /v1/infer/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		if v := r.URL.Query().Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 10*time.Minute {
				cancel()
				oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("wait=%q: want a duration from 0 to 10m", v))
				return
			}
			ctx, cancel = context.WithTimeout(r.Context(), d)
		} else {
			cancel() // look only
		}
		defer cancel()
		writePoolResult(n, w, r.PathValue("id"), "")(svc.PoolResult(ctx, r.PathValue("id")))
	})
	n.API().Handle("GET /v1/infer/stats", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, svc.Stats())
	})
}

func inferViaPool(n *Node, svc *infer.Service, w http.ResponseWriter, r *http.Request, req InferRequest) {
	if req.Skill == "" || req.Model != "" || req.Host != "" {
		oam.WriteError(w, http.StatusBadRequest, errors.New("with pool, give skill (the agents that bid choose the model and host)"))
		return
	}
	spec := infer.PoolSpec{Pool: req.Pool, Skill: req.Skill, MaxPrice: req.MaxPrice}
	var err error
	if spec.Policy, err = taskpool.ParsePolicy(req.Policy); err != nil {
		oam.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if req.Policy == "" {
		spec.Policy = "" // the service's default (best)
	}
	if req.Deadline != "" {
		if spec.Deadline, err = time.ParseDuration(req.Deadline); err != nil || spec.Deadline <= 0 {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("deadline=%q: want a positive duration like 5m", req.Deadline))
			return
		}
	}
	id, err := svc.PostQuery(r.Context(), spec, req.Input)
	if err != nil {
		oam.WriteJSON(w, inferStatus(err), InferError{Error: err.Error()})
		return
	}
	if req.Detach {
		oam.WriteJSON(w, http.StatusAccepted, InferPending{Task: id, State: string(taskpool.StateOpen)})
		return
	}
	writePoolResult(n, w, id, req.Skill)(svc.PoolResult(r.Context(), id))
}

// writePoolResult answers with a pool query's result, its pending state
// (202) or why it failed.
func writePoolResult(n *Node, w http.ResponseWriter, id, skill string) func(*infer.Result, error) {
	return func(res *infer.Result, err error) {
		var pe *infer.PendingError
		switch {
		case errors.As(err, &pe):
			oam.WriteJSON(w, http.StatusAccepted, InferPending{Task: id, State: string(pe.State)})
		case err != nil:
			out := InferError{Error: err.Error()}
			n.Events().Publish(oam.Event{Type: "infer.failed", Data: out})
			oam.WriteJSON(w, inferStatus(err), out)
		default:
			n.Events().Publish(oam.Event{Type: "infer.answered", Data: map[string]any{
				"skill": skill, "model": res.Model, "host": res.Host, "class": res.Class, "took_ns": res.Took, "task": id}})
			oam.WriteJSON(w, http.StatusOK, res)
		}
	}
}

func registerInferMetrics(reg *prometheus.Registry, svc *infer.Service) {
	counter := func(name, help string, get func(infer.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "daitn_infer_" + name, Help: help},
			func() float64 { return float64(get(svc.Stats())) })
	}
	gauge := func(name, help string, get func(infer.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "daitn_infer_" + name, Help: help},
			func() float64 { return float64(get(svc.Stats())) })
	}
	for _, c := range []prometheus.Collector{
		counter("served_total", "Queries answered with a prediction.", func(s infer.Stats) int64 { return s.Served }),
		counter("busy_total", "Queries answered busy.", func(s infer.Stats) int64 { return s.Busy }),
		counter("bad_input_total", "Queries refused for bad input.", func(s infer.Stats) int64 { return s.BadInput }),
		counter("unavailable_total", "Queries for a model whose weights were missing or unloadable.", func(s infer.Stats) int64 { return s.Unavailable }),
		gauge("in_flight", "Queries running now.", func(s infer.Stats) int64 { return s.InFlight }),
		gauge("queued", "Queries waiting for a slot now.", func(s infer.Stats) int64 { return s.Queued }),
	} {
		_ = reg.Register(c) // a second node in one process re-registers: ignore
	}
}
