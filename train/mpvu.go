package train

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/learn"
)

// TestsetName is the descriptor name of the MPVU's held-out set.
const TestsetName = "mpvu-testset"

type mpvuRole struct {
	set   *dataset.Set
	id    string // testset descriptor slot id
	sem   chan struct{}
	tasks []string
}

func (s *Service) startMPVU(ctx context.Context) (*mpvuRole, error) {
	dir := s.cfg.testsetDir
	var set *dataset.Set
	var err error
	if dir == "" {
		if dir, err = dataset.MNISTDir(); err != nil {
			return nil, fmt.Errorf("no --testset given and the MNIST test set is not found: %w", err)
		}
		set, err = dataset.ReadSet(dir, "t10k", 0)
	} else {
		// A test-set directory holds t10k-* files, or train-* files.
		set, err = dataset.ReadSet(dir, "t10k", 0)
		if err != nil {
			set, err = dataset.ReadSet(dir, dataset.TrainPrefix, 0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read test set %s: %w", dir, err)
	}
	if n := s.cfg.testsetLimit; n > 0 && n < set.Len() {
		d := set.Rows * set.Cols
		set.X, set.Y = set.X[:n*d], set.Y[:n]
	}
	dist := map[string]int64{}
	for _, y := range set.Y {
		dist[strconv.Itoa(int(y))]++
	}
	m := &mpvuRole{set: set, sem: make(chan struct{}, 1), tasks: []string{DefaultTask}}
	signed, err := s.desc.Publish(ctx, &descriptors.Descriptor{
		Header: descriptors.Header{Kind: descriptors.KindTestset, Name: TestsetName},
		Testset: &descriptors.Testset{
			Task: DefaultTask, Modality: "image", Samples: int64(set.Len()),
			Metrics: []string{"accuracy", "loss"}, LabelDist: dist, Updated: time.Now().UTC(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("publish testset descriptor: %w", err)
	}
	m.id = signed.Slot.String()
	s.h.SetStreamHandler(EvalProtocol, s.handleEval)
	s.log.Info("mpvu ready", "testset", dir, "samples", set.Len(), "descriptor", m.id)
	return m, nil
}

// Eval status bytes on the wire.
const (
	evalOK  byte = 0
	evalErr byte = 1
)

const maxEvalErrText = 1 << 10

func (s *Service) handleEval(st network.Stream) {
	if err := st.Scope().SetService("daitn.mpvu"); err != nil {
		st.Reset()
		return
	}
	if err := st.Scope().ReserveMemory(MaxEvalRequestBytes+MaxEvalReportBytes, network.ReservationPriorityAlways); err != nil {
		st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(MaxEvalRequestBytes + MaxEvalReportBytes)
	_ = st.SetDeadline(time.Now().Add(s.cfg.evalTimeout))
	br := bufio.NewReader(st)
	if _, err := br.ReadByte(); err != nil {
		st.Reset()
		return
	}
	b, err := readFrame(br, MaxEvalRequestBytes)
	if err != nil {
		st.Reset()
		return
	}
	out, err := s.evaluateRequest(st.Conn().RemotePeer(), b)
	if err != nil {
		msg := err.Error()
		if len(msg) > maxEvalErrText {
			msg = msg[:maxEvalErrText]
		}
		_ = writeFrame(st, evalErr, []byte(msg))
	} else {
		_ = writeFrame(st, evalOK, out)
	}
	_ = st.Close()
}

func (s *Service) evaluateRequest(remote peer.ID, b []byte) ([]byte, error) {
	req, err := UnmarshalEvalRequest(b)
	if err != nil {
		return nil, err
	}
	select {
	case s.mpvu.sem <- struct{}{}:
	case <-s.ctx.Done():
		return nil, ErrClosed
	}
	defer func() { <-s.mpvu.sem }()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.evalTimeout)
	defer cancel()
	root, _ := cid.Decode(req.Model)
	m, _, err := s.fetchModel(ctx, root, req.Arch, remote)
	if err != nil {
		return nil, err
	}
	_ = s.xfer.Unpin(ctx, root)
	if m.Arch.Inputs() != s.mpvu.set.Rows*s.mpvu.set.Cols {
		return nil, fmt.Errorf("model %s takes %d inputs, the test set has %d", req.Arch, m.Arch.Inputs(), s.mpvu.set.Rows*s.mpvu.set.Cols)
	}
	ev, err := learn.Evaluate(m, learn.Data{X: s.mpvu.set.X, Y: s.mpvu.set.Y})
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	rep := &EvalReport{
		Model: req.Model, Arch: req.Arch, Testset: s.mpvu.id, Accuracy: ev.Accuracy, Loss: ev.Loss,
		Samples: ev.Samples, Time: time.Now().UnixMilli(), Evaluator: s.h.ID().String(), Nonce: req.Nonce,
	}
	s.stats.evals.Add(1)
	s.log.Info("evaluated", "model", req.Model, "for", remote, "accuracy", ev.Accuracy, "loss", ev.Loss)
	return SealEvalReport(rep, s.key)
}

// Evaluate asks the MPVU mpvu to evaluate the model at root (which this
// node must be able to serve) and returns its verified, signed report and
// the envelope bytes. A report not signed by mpvu, or for another model,
// or not answering this request's nonce, is an error wrapping
// ErrNotChosenMPVU or ErrBadMessage and must be ignored.
func (s *Service) Evaluate(ctx context.Context, mpvu peer.ID, root cid.Cid, arch, task string) (*EvalReport, []byte, error) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	req := &EvalRequest{Model: root.String(), Arch: arch, Task: task, Nonce: nonce}
	if err := req.Validate(); err != nil {
		return nil, nil, err
	}
	rb, err := encMode.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.evalTimeout)
	defer cancel()
	st, err := s.h.NewStream(network.WithAllowLimitedConn(ctx, "mpvu"), mpvu, EvalProtocol)
	if err != nil {
		return nil, nil, fmt.Errorf("open evaluation stream to %s: %w", mpvu, err)
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := writeFrame(st, evalOK, rb); err != nil {
		st.Reset()
		return nil, nil, fmt.Errorf("send evaluation request to %s: %w", mpvu, err)
	}
	_ = st.CloseWrite()
	br := bufio.NewReader(st)
	status, err := br.ReadByte()
	if err != nil {
		st.Reset()
		return nil, nil, fmt.Errorf("read evaluation reply from %s: %w", mpvu, err)
	}
	body, err := readFrame(br, MaxEvalReportBytes)
	if err != nil {
		st.Reset()
		return nil, nil, fmt.Errorf("read evaluation reply from %s: %w", mpvu, err)
	}
	if status != evalOK {
		if len(body) > maxEvalErrText {
			body = body[:maxEvalErrText]
		}
		return nil, nil, fmt.Errorf("mpvu %s: %s", mpvu, strings.ToValidUTF8(string(body), "?"))
	}
	rep, err := VerifyReport(body, mpvu, root.String(), nonce)
	if err != nil {
		return nil, body, fmt.Errorf("report from %s: %w", mpvu, err)
	}
	return rep, body, nil
}

// A frame is a status byte (evalOK on requests), a uvarint length and the
// payload.
func writeFrame(w io.Writer, status byte, p []byte) error {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = status
	n := 1 + binary.PutUvarint(hdr[1:], uint64(len(p)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// readFrame reads the length and payload of a frame whose status byte the
// caller consumed, refusing more than limit bytes before allocating.
func readFrame(br *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("frame of %d bytes, at most %d accepted", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}
