package taskpool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProtocolID is the stream protocol for bids, offers, lease renewals,
// results and notices between a poster and an agent.
const ProtocolID = "/daitn/taskpool/1.0.0"

const serviceName = "daitn.taskpool"

// Operations on the stream: the first message of a stream names one, the
// reply carries a code. One request and one reply per stream.
const (
	opBid    = "bid"    // agent → poster: Env = signed Bid
	opRenew  = "renew"  // agent → poster: TaskID, Epoch
	opResult = "result" // agent → poster: Env = signed Result
	opOffer  = "offer"  // poster → agent: Env = signed Assignment; reply Env = signed Ack
	opLost   = "lost"   // poster → agent: TaskID, the bid did not win
	opCancel = "cancel" // poster → agent: TaskID, Epoch; stop working
	opReply  = "reply"
)

// Reply codes.
const (
	codeOK        = "ok"
	codePending   = "pending"
	codeRejected  = "rejected"
	codeStale     = "stale"
	codeNotFound  = "notfound"
	codeCancelled = "cancelled"
	codeAck       = "ack"
	codeDeclined  = "declined"
)

type wireMsg struct {
	Op     string `cbor:"1,keyasint"`
	Env    []byte `cbor:"2,keyasint,omitempty"`
	Poster string `cbor:"3,keyasint,omitempty"`
	TaskID string `cbor:"4,keyasint,omitempty"`
	Epoch  uint64 `cbor:"5,keyasint,omitempty"`
	Code   string `cbor:"6,keyasint,omitempty"`
	Detail string `cbor:"7,keyasint,omitempty"`
	Until  int64  `cbor:"8,keyasint,omitempty"`
}

// errUnreached: the request never left (no stream); errAmbiguous: it may
// have been processed but we have no answer.
var (
	errUnreached = errors.New("peer not reached")
	errAmbiguous = errors.New("no answer")
)

// errFrameTooBig is returned when a peer announces a frame over the limit.
var errFrameTooBig = errors.New("frame too big")

func writeMsg(w io.Writer, m *wireMsg) error {
	b, err := encMode.Marshal(m)
	if err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(append(hdr[:n:n], b...)); err != nil {
		return err
	}
	return nil
}

// decodeMsg decodes one frame body with the strict decoder.
func decodeMsg(b []byte) (*wireMsg, error) {
	var m wireMsg
	if err := decMode.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	if m.Op == "" || len(m.Op) > 16 {
		return nil, fmt.Errorf("message op: %q, want one of bid, renew, result, offer, lost, cancel, reply", m.Op)
	}
	if len(m.TaskID) > maxIDLen || len(m.Poster) > 128 || len(m.Code) > 16 || len(m.Detail) > maxTextLen {
		return nil, errors.New("message: task_id, poster, code or detail too long")
	}
	return &m, nil
}

// readStreamMsg reads one frame from st, reserving memory in the stream's
// resource scope for the frame's announced size (not the largest possible
// frame), so many small concurrent requests do not exhaust the service's
// budget while a large result still has to be paid for before it is read.
func readStreamMsg(st network.Stream, limit int, prio uint8) (*wireMsg, error) {
	r := bufio.NewReader(st)
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("read frame length: %w", err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("read frame: %d bytes, at most %d accepted: %w", n, limit, errFrameTooBig)
	}
	if err := st.Scope().ReserveMemory(int(n), prio); err != nil {
		return nil, fmt.Errorf("read frame: reserve %d bytes: %w", n, err)
	}
	defer st.Scope().ReleaseMemory(int(n))
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return decodeMsg(buf)
}

func readMsg(r *bufio.Reader, limit int) (*wireMsg, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("read frame length: %w", err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("read frame: %d bytes, at most %d accepted: %w", n, limit, errFrameTooBig)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return decodeMsg(buf)
}

// frameLimit bounds any frame: the largest result plus envelope overhead.
func (s *Service) frameLimit() int { return s.cfg.maxResult + 32<<10 }

// call sends one request to p and returns its reply.
func (s *Service) call(ctx context.Context, p peer.ID, req *wireMsg) (*wireMsg, error) {
	if p == s.self {
		// A node can be an agent for its own tasks (a training client that
		// also holds data): no stream to itself, same checks.
		return s.dispatch(p, req), nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.callTimeout)
	defer cancel()
	st, err := s.h.NewStream(network.WithAllowLimitedConn(ctx, serviceName), p, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("%s to %s: open stream: %w: %w", req.Op, p, errUnreached, err)
	}
	if err := st.Scope().SetService(serviceName); err != nil {
		st.Reset()
		return nil, fmt.Errorf("%s to %s: set service: %w", req.Op, p, err)
	}
	limit := s.frameLimit()
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	if err := writeMsg(st, req); err != nil {
		st.Reset()
		return nil, fmt.Errorf("%s to %s: write: %w", req.Op, p, err)
	}
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return nil, fmt.Errorf("%s to %s: close write: %w", req.Op, p, err)
	}
	resp, err := readStreamMsg(st, limit, network.ReservationPriorityMedium)
	if err != nil {
		st.Reset()
		return nil, fmt.Errorf("%s to %s: %w", req.Op, p, err)
	}
	_ = st.Close()
	if resp.Op != opReply {
		return nil, fmt.Errorf("%s to %s: reply op %q, want %q", req.Op, p, resp.Op, opReply)
	}
	return resp, nil
}

func (s *Service) handleStream(st network.Stream) {
	if err := st.Scope().SetService(serviceName); err != nil {
		st.Reset()
		return
	}
	limit := s.frameLimit()
	_ = st.SetDeadline(time.Now().Add(s.cfg.callTimeout))
	req, err := readStreamMsg(st, limit, network.ReservationPriorityLow)
	if err != nil {
		s.log.Debug("bad request", "peer", st.Conn().RemotePeer(), "err", err)
		st.Reset()
		return
	}
	// Close takes the gate for writing, so it waits for requests in
	// flight and refuses later ones: none can touch state after Close.
	s.gate.RLock()
	if s.gateShut {
		s.gate.RUnlock()
		st.Reset()
		return
	}
	resp := s.dispatch(st.Conn().RemotePeer(), req)
	s.gate.RUnlock()
	if err := writeMsg(st, resp); err != nil {
		st.Reset()
		return
	}
	_ = st.Close()
}

// dispatch answers one request from remote.
func (s *Service) dispatch(remote peer.ID, req *wireMsg) *wireMsg {
	var resp *wireMsg
	switch req.Op {
	case opBid:
		resp = s.onBid(remote, req)
	case opRenew:
		resp = s.onRenew(remote, req)
	case opResult:
		resp = s.onResult(remote, req)
	case opOffer:
		resp = s.onOffer(remote, req)
	case opLost:
		resp = s.onLost(remote, req)
	case opCancel:
		resp = s.onCancelNotice(remote, req)
	default:
		resp = reply(codeRejected, fmt.Sprintf("op %q: want bid, renew, result, offer, lost or cancel", req.Op))
	}
	resp.Op = opReply
	return resp
}

func reply(code, detail string) *wireMsg {
	return &wireMsg{Op: opReply, Code: code, Detail: detail}
}
