package infer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/routing"
)

// ErrNoModel is wrapped when Q-FAM finds no reachable model meeting the
// query; the error text carries its reasons.
var ErrNoModel = errors.New("no model can answer")

// ErrNoAnswer is wrapped when every host tried failed.
var ErrNoAnswer = errors.New("no host answered")

// Result is an answered query.
type Result struct {
	Class      int       `json:"class"`
	Confidence float32   `json:"confidence"` // the probability of Class
	Probs      []float32 `json:"probs"`
	Model      string    `json:"model"`             // descriptor slot id of the model that answered
	Version    string    `json:"version,omitempty"` // descriptor version id
	Name       string    `json:"name,omitempty"`    // descriptor name
	Host       peer.ID   `json:"host"`              // the peer that answered (the stream's remote, not a claim)
	// HostTime is what the host reports it spent, queueing included; Took
	// is the whole query as the client saw it, failed attempts included.
	HostTime time.Duration `json:"host_ns"`
	Took     time.Duration `json:"took_ns"`
	Tried    []Attempt     `json:"tried"`
	// Task is the task id when the query went through a task pool.
	Task string `json:"task,omitempty"`
}

// Attempt is one host asked, in order.
type Attempt struct {
	Host   peer.ID       `json:"host"`
	Model  string        `json:"model"`
	Status Status        `json:"status"` // a host's status, or "error" when it was not reached or timed out
	Error  string        `json:"error,omitempty"`
	Took   time.Duration `json:"took_ns"`
}

// QueryError is returned when no host answered: the attempts made, and the
// reason (wrapping ErrBusy when every host tried was busy, ErrBadInput when
// a host refused the input, a host's refusal when one host was asked, else
// ErrNoAnswer).
type QueryError struct {
	Tried []Attempt
	Err   error
	// listTried: the message names each host tried and its reason (when
	// several failed; one refusal already says it all).
	listTried bool
}

func (e *QueryError) Error() string {
	if !e.listTried {
		return e.Err.Error()
	}
	var b strings.Builder
	b.WriteString(e.Err.Error())
	for i, a := range e.Tried {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (model %s): %s", a.Host, short(a.Model), a.Error)
	}
	return b.String()
}

func (e *QueryError) Unwrap() error { return e.Err }

// HostError is one host's refusal; it wraps the sentinel of its status.
// The reason is the host's own words, which name the problem.
type HostError struct {
	Status Status
	Reason string
}

func (e *HostError) Error() string { return e.Reason }

func (e *HostError) Unwrap() error {
	switch e.Status {
	case StatusBusy:
		return ErrBusy
	case StatusBadInput:
		return ErrBadInput
	case StatusUnknownModel:
		return ErrUnknownModel
	case StatusUnavailable:
		return ErrUnavailable
	case StatusError:
		return ErrNoAnswer
	}
	return nil
}

func short(s string) string {
	if len(s) > 16 {
		return s[:6] + "…" + s[len(s)-6:]
	}
	return s
}

// Query answers input with the best reachable model for spec: Q-FAM on a
// fresh map snapshot (its reasons are the error when nothing fits), Q-IRCE
// ranks the hosts, and the best is asked; a host that cannot be reached,
// is busy, cannot serve the model or times out is skipped for the next,
// up to the failover limit. Bad input is not retried elsewhere: every host
// would refuse it. The input is PNG, JPEG or raw float32 values, detected.
func (s *Service) Query(ctx context.Context, spec routing.QuerySpec, input []byte) (*Result, error) {
	t0 := time.Now()
	if err := checkInput(input); err != nil {
		return nil, err
	}
	if s.cfg.snapshot == nil {
		return nil, fmt.Errorf("query %q: %w: this node has no live map", spec.Skill, ErrNoModel)
	}
	snap := s.cfg.snapshot()
	adm, err := routing.QFAM(snap, spec)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if !adm.Admit {
		return nil, fmt.Errorf("query %q: %w: %s", spec.Skill, ErrNoModel, strings.Join(adm.Reasons, "; "))
	}
	cands, err := routing.QIRCE(snap, spec)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w: %w", spec.Skill, ErrNoModel, err)
	}
	var tried []Attempt
	skip := map[peer.ID]bool{} // hosts that failed: their other models would too
	allBusy := true
	for _, c := range cands {
		if len(tried) >= s.cfg.attempts {
			break
		}
		if skip[c.Host] {
			continue
		}
		res, a, err := s.attempt(ctx, c.Host, &Request{Model: c.Model, Skill: spec.Skill, Input: input})
		tried = append(tried, a)
		if err == nil {
			res.Tried, res.Took = tried, time.Since(t0)
			return res, nil
		}
		if errors.Is(err, ErrBadInput) {
			return nil, &QueryError{Tried: tried, Err: fmt.Errorf("query %q: %w (host %s, model %s)", spec.Skill, err, c.Host, short(c.Model))}
		}
		if ctx.Err() != nil {
			return nil, &QueryError{Tried: tried, Err: fmt.Errorf("query %q: %w", spec.Skill, ctx.Err())}
		}
		if !errors.Is(err, ErrBusy) {
			allBusy = false
		}
		skip[c.Host] = true
	}
	why := ErrNoAnswer
	if allBusy {
		why = ErrBusy
	}
	return nil, &QueryError{Tried: tried, Err: fmt.Errorf("query %q: %d host(s) tried: %w", spec.Skill, len(tried), why), listTried: true}
}

// QueryModel asks the host of one model: id is its descriptor slot or
// version id. The host is found in the live map or, failing that, from the
// descriptor itself. No planner and no failover: the model has one host.
func (s *Service) QueryModel(ctx context.Context, id string, input []byte) (*Result, error) {
	t0 := time.Now()
	if err := checkInput(input); err != nil {
		return nil, err
	}
	host, slot, err := s.modelHost(ctx, id)
	if err != nil {
		return nil, err
	}
	res, a, err := s.attempt(ctx, host, &Request{Model: slot, Input: input})
	if err != nil {
		return nil, &QueryError{Tried: []Attempt{a}, Err: fmt.Errorf("query model %s on %s: %w", short(id), host, err)}
	}
	res.Tried, res.Took = []Attempt{a}, time.Since(t0)
	return res, nil
}

// Ask sends one query to host for model (empty: the host's best model with
// skill), without a map and without failover.
func (s *Service) Ask(ctx context.Context, host peer.ID, model, skill string, input []byte) (*Result, error) {
	t0 := time.Now()
	if err := checkInput(input); err != nil {
		return nil, err
	}
	res, a, err := s.attempt(ctx, host, &Request{Model: model, Skill: skill, Input: input})
	if err != nil {
		return nil, &QueryError{Tried: []Attempt{a}, Err: fmt.Errorf("ask %s: %w", host, err)}
	}
	res.Tried, res.Took = []Attempt{a}, time.Since(t0)
	return res, nil
}

func (s *Service) modelHost(ctx context.Context, id string) (peer.ID, string, error) {
	if s.cfg.snapshot != nil {
		if it := s.cfg.snapshot().Item(id); it != nil {
			return it.Owner, it.ID, nil
		}
	}
	c, err := cid.Decode(id)
	if err != nil {
		return "", "", fmt.Errorf("model %q: not a descriptor id: %w", truncate(id, 80), err)
	}
	sd, err := s.models.cat.Get(ctx, c)
	if err != nil {
		return "", "", fmt.Errorf("model %s: %w", id, err)
	}
	if sd.Model == nil {
		return "", "", fmt.Errorf("descriptor %s is a %s, not a model", id, sd.Kind)
	}
	owner, err := peer.Decode(sd.Owner)
	if err != nil {
		return "", "", fmt.Errorf("model %s: owner %q: %w", id, sd.Owner, err)
	}
	return owner, sd.Slot.String(), nil
}

func checkInput(input []byte) error {
	switch {
	case len(input) == 0:
		return fmt.Errorf("query: %w: input is empty", ErrBadInput)
	case len(input) > MaxInputBytes:
		return fmt.Errorf("query: %w: input is %d bytes, at most %d accepted", ErrBadInput, len(input), MaxInputBytes)
	}
	return nil
}

// attempt asks one host, within the per-attempt timeout; the host's own
// node is served in process.
func (s *Service) attempt(ctx context.Context, host peer.ID, req *Request) (*Result, Attempt, error) {
	t0 := time.Now()
	a := Attempt{Host: host, Model: req.Model}
	resp, err := s.exchange(ctx, host, req)
	a.Took = time.Since(t0)
	if err == nil && resp.Status != StatusOK {
		err = &HostError{Status: resp.Status, Reason: resp.Error}
	}
	if err != nil {
		a.Status, a.Error = StatusError, err.Error()
		var he *HostError
		if errors.As(err, &he) {
			a.Status, a.Error = he.Status, he.Reason
		}
		return nil, a, err
	}
	a.Status, a.Model = StatusOK, resp.Model
	return &Result{
		Class: resp.Class, Confidence: resp.Probs[resp.Class], Probs: resp.Probs, Model: resp.Model, Version: resp.Version, Name: resp.Name,
		Host: host, HostTime: time.Duration(resp.HostMicros) * time.Microsecond,
	}, a, nil
}

func (s *Service) exchange(ctx context.Context, host peer.ID, req *Request) (*Response, error) {
	if req.Format == FormatAuto {
		req.Format = DetectFormat(req.Input)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.attemptTimeout)
	defer cancel()
	if host == s.h.ID() {
		return s.serve(ctx, host, req), nil
	}
	body, err := encMode.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode query: %w", err)
	}
	st, err := s.h.NewStream(network.WithAllowLimitedConn(ctx, serviceName), host, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("open query stream to %s: %w", host, err)
	}
	defer st.Close()
	if err := st.Scope().SetService(serviceName); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("query stream to %s: %w", host, err)
	}
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	// The deadline bounds blocking reads and writes; cancelling ctx
	// early (the caller gave up) resets the stream too.
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if err := writeFrame(st, body); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("send query to %s: %w", host, err)
	}
	_ = st.CloseWrite()
	b, err := readFrame(bufio.NewReaderSize(st, 1024), MaxResponseBytes)
	if err != nil {
		_ = st.Reset()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("answer from %s: %w", host, ctx.Err())
		}
		return nil, fmt.Errorf("read answer from %s: %w", host, err)
	}
	resp, err := UnmarshalResponse(b)
	if err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("answer from %s: %w", host, err)
	}
	return resp, nil
}
