package infer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// track registers a handler's stream so Close can reset it; false once
// the service is closing.
func (s *Service) track(st network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams[st] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Service) untrack(st network.Stream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
	s.wg.Done()
}

// handleStream answers one query: read the request within the read
// deadline (its memory reserved in the stream's scope first), serve it,
// write the answer within the write deadline.
func (s *Service) handleStream(st network.Stream) {
	if !s.track(st) {
		_ = st.Reset()
		return
	}
	defer s.untrack(st)
	if err := st.Scope().SetService(serviceName); err != nil {
		s.log.Debug("infer stream refused by the resource manager", "peer", st.Conn().RemotePeer(), "err", err)
		_ = st.Reset()
		return
	}
	remote := st.Conn().RemotePeer()
	_ = st.SetReadDeadline(time.Now().Add(s.cfg.readTimeout))
	br := bufio.NewReaderSize(st, 4096)
	n, err := readFrameLen(br, MaxRequestBytes)
	if errors.Is(err, errFrameTooBig) {
		// Say why before hanging up, so an honest client with a big
		// file learns the limit instead of seeing a reset.
		s.counters.badInput.Add(1)
		if s.reply(st, &Response{Status: StatusBadInput, Error: clip(fmt.Sprintf("request %v; the input may be at most %d bytes", err, MaxInputBytes))}) {
			s.drainAndClose(st, br)
			return
		}
		_ = st.Reset()
		return
	}
	if err != nil {
		_ = st.Reset()
		return
	}
	// The frame and the decoded request holding a copy of the input.
	reserve := 2 * n
	if err := st.Scope().ReserveMemory(reserve, network.ReservationPriorityMedium); err != nil {
		s.counters.busy.Add(1)
		if s.reply(st, &Response{Status: StatusBusy, Error: "host busy: no memory left for queries now"}) {
			s.drainAndClose(st, br)
			return
		}
		_ = st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(reserve)
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		_ = st.Reset()
		return
	}
	var resp *Response
	if req, err := UnmarshalRequest(body); err != nil {
		s.counters.badInput.Add(1)
		resp = &Response{Status: StatusBadInput, Error: clip(err.Error())}
	} else {
		resp = s.serve(s.ctx, remote, req)
	}
	if !s.reply(st, resp) {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

// maxDrain bounds what is read and thrown away after refusing an
// oversized request: a reset would discard our answer on the client's side
// before it reads it, so the rest of a moderately oversized request is
// swallowed (within the read deadline) and the stream closed cleanly.
const maxDrain = 4 << 20

func (s *Service) drainAndClose(st network.Stream, br *bufio.Reader) {
	_ = st.CloseWrite()
	n, err := io.CopyN(io.Discard, br, maxDrain)
	if n < maxDrain && err == io.EOF {
		_ = st.Close()
		return
	}
	_ = st.Reset()
}

// reply writes one response frame within the write deadline.
func (s *Service) reply(st network.Stream, r *Response) bool {
	b, err := MarshalResponse(r)
	if err != nil {
		s.log.Warn("infer: cannot encode response", "err", err)
		return false
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout))
	return writeFrame(st, b) == nil
}

// serve runs one query for remote (or this node) and never panics on what
// the request holds: every problem becomes a status with a reason.
func (s *Service) serve(ctx context.Context, remote peer.ID, req *Request) *Response {
	return s.serveWith(ctx, remote, req, s.admit)
}

// serveWith is serve with admit as the way to a query slot.
func (s *Service) serveWith(ctx context.Context, remote peer.ID, req *Request, admit func(context.Context) (func(), bool)) *Response {
	t0 := time.Now()
	resp := s.serveQuery(ctx, req, admit)
	resp.HostMicros = time.Since(t0).Microseconds()
	c := &s.counters
	switch resp.Status {
	case StatusOK:
		c.served.Add(1)
	case StatusBusy:
		c.busy.Add(1)
	case StatusBadInput:
		c.badInput.Add(1)
	case StatusUnknownModel:
		c.unknown.Add(1)
	case StatusUnavailable:
		c.unavailable.Add(1)
	default:
		c.failed.Add(1)
	}
	if resp.Status != StatusOK {
		s.log.Debug("infer: query not answered", "peer", remote, "model", req.Model, "skill", req.Skill, "status", resp.Status, "reason", resp.Error)
	}
	return resp
}

func (s *Service) serveQuery(ctx context.Context, req *Request, admit func(context.Context) (func(), bool)) *Response {
	fail := func(st Status, err error) *Response { return &Response{Status: st, Error: clip(err.Error())} }
	sd, err := s.models.resolve(req)
	if err != nil {
		return fail(StatusUnknownModel, err)
	}
	release, ok := admit(ctx)
	if !ok {
		if ctx.Err() != nil {
			return fail(StatusError, ErrClosed)
		}
		return fail(StatusBusy, fmt.Errorf("%w: %d queries running and %d waiting, the limit", ErrBusy, s.cfg.concurrent, s.cfg.queue))
	}
	defer release()
	lm, err := s.models.get(ctx, sd)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return fail(StatusUnavailable, err)
		}
		return fail(StatusError, fmt.Errorf("load model %s: %w", sd.Name, err))
	}
	x, err := DecodeInput(req.Format, req.Input, lm.model.Arch.Inputs())
	if err != nil {
		return fail(StatusBadInput, err)
	}
	class, probs, err := lm.model.Predict(x)
	if err != nil {
		return fail(StatusError, fmt.Errorf("predict with model %s: %w", sd.Name, err))
	}
	// Softmax rounding can leave a probability a hair outside [0,1].
	for i, p := range probs {
		probs[i] = min(max(p, 0), 1)
	}
	return &Response{Status: StatusOK, Class: class, Probs: probs, Model: sd.Slot.String(), Version: sd.ID.String(), Name: sd.Name}
}
