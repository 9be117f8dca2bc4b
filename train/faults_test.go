package train_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/train"
	"github.com/daitn/daitn/transfer"
)

// hostile replaces a data node's honest training with a handler that
// answers every round with a poisoned update: the same hand-written peer an
// attacker would run, speaking the real protocol.
func hostile(t *testing.T, f *fedNode, poison func(*learn.Model) []byte) {
	t.Helper()
	// Stop the honest agent by closing the train service only; descriptors,
	// transfer and taskpool keep running, and the dataset stays published.
	_ = f.st.Train.Close()
	_, err := f.st.Pool.RunAgent(taskpool.AgentConfig{
		Pool: train.Pool, Kinds: []string{train.KindRound},
		Handler: func(ctx context.Context, task taskpool.Task) ([]byte, error) {
			rt, err := train.UnmarshalRoundTask(task.Input)
			if err != nil {
				return nil, err
			}
			root, _ := cid.Decode(rt.Model)
			poster, _ := peer.Decode(task.Poster)
			if _, err := f.st.Xfer.Fetch(ctx, root, transfer.FetchOptions{Providers: []peer.ID{poster}}); err != nil {
				return nil, err
			}
			m, _ := learn.New(rt.Arch, 7)
			up, err := f.st.Xfer.AddBytes(ctx, poison(m))
			if err != nil {
				return nil, err
			}
			return train.MarshalRoundResult(&train.RoundResult{Update: up.String(), Samples: 100000, Loss: 0.01})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func nanUpdate(m *learn.Model) []byte {
	b, _ := learn.Marshal(m)
	off := learn.ParamsOffset(m.Arch) + 4*1000
	binary.LittleEndian.PutUint32(b[off:], math.Float32bits(float32(math.NaN())))
	return b
}

// inflated is a valid model; the hostile handler claims far more samples
// than the node's dataset holds, to dominate the weighted average.
func inflated(m *learn.Model) []byte {
	b, _ := learn.Marshal(m)
	return b
}

// huge is 16 MiB of junk offered as an update: the client must stop
// fetching once the root announces more than a model's size.
func huge(_ *learn.Model) []byte {
	b := make([]byte, 16<<20)
	for i := range b {
		b[i] = byte(i * 7919 >> 3)
	}
	return b
}

func wrongDims(_ *learn.Model) []byte {
	m, _ := learn.New(learn.LogReg, 1)
	b, _ := learn.Marshal(m)
	return b
}

// TestFederationFaults runs one job through a NaN update, an update of the
// wrong shape, a data node that dies holding its lease, and a client that is
// killed and restarted: the bad updates are rejected and their senders
// excluded, the rounds go on without the dead node, a report not signed by
// the chosen MPVU is ignored, and the restarted client resumes from its
// checkpoint and finishes.
func TestFederationFaults(t *testing.T) {
	cfg := fedConfig{data: 6, lease: 2 * time.Second, testLimit: 3000}
	mpvu, data, client := startFed(t, cfg)
	hostile(t, data[0], nanUpdate)
	hostile(t, data[1], wrongDims)
	hostile(t, data[3], huge)
	hostile(t, data[5], inflated)
	victim := data[2]

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	spec := baseSpec()
	spec.Target.Accuracy = 0.85
	spec.Settings.Clients = 6
	spec.Target.MaxRounds = 30
	job, err := client.st.Train.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Kill the victim while it holds a lease on round 1.
	nodetestEventually(t, 60*time.Second, "victim holds a round", func() bool {
		return victim.st.Train.Busy() > 0
	})
	victim.kill()
	t.Logf("killed data node %s mid-round", victim.nd.ID())

	nodetestEventually(t, 90*time.Second, "round 1 checkpointed", func() bool {
		j, err := client.st.Train.Job(job.ID)
		return err == nil && j.Round >= 1
	})
	j, _ := client.st.Train.Job(job.ID)
	r1 := j.History[0]
	t.Logf("round 1: nodes %d failed %v rejected %v accuracy %.4f", len(r1.Nodes), r1.Failed, r1.Rejected, r1.Accuracy)
	if _, ok := r1.Failed[victim.nd.ID().String()]; !ok {
		t.Errorf("round 1 did not record the dead node %s as failed: %v", victim.nd.ID(), r1.Failed)
	}
	for _, h := range []*fedNode{data[0], data[1], data[3], data[5]} {
		why, ok := j.Excluded[h.nd.ID().String()]
		if !ok {
			t.Errorf("hostile node %s not excluded: %v", h.nd.ID(), j.Excluded)
		}
		if _, ok := r1.Rejected[h.nd.ID().String()]; !ok {
			t.Errorf("round 1 did not reject hostile node %s: %v", h.nd.ID(), r1.Rejected)
		}
		t.Logf("excluded %s: %s", h.nd.ID(), why)
	}
	if !strings.Contains(j.Excluded[data[0].nd.ID().String()], learn.ErrNonFinite.Error()) &&
		!strings.Contains(j.Excluded[data[0].nd.ID().String()], "non-finite") {
		t.Errorf("NaN sender excluded for %q, want a non-finite parameter error", j.Excluded[data[0].nd.ID().String()])
	}
	if why := j.Excluded[data[5].nd.ID().String()]; !strings.Contains(why, "claims 100000 samples") {
		t.Errorf("inflated sender excluded for %q, want the sample claim named", why)
	}
	if r1.BytesUp > 8<<20 {
		t.Errorf("round 1 fetched %d update bytes: the 16 MiB junk update was not cut short", r1.BytesUp)
	}
	if len(r1.Nodes) != 1 || r1.Accuracy <= 0 {
		t.Errorf("round 1 averaged %d updates with accuracy %.4f, want the 1 honest one and a signed accuracy", len(r1.Nodes), r1.Accuracy)
	}

	// The MPVU turns hostile: it answers with a report claiming 99%
	// accuracy, signed by another key. The client must not believe it.
	forger(t, mpvu)

	// Kill the client and restart it on the same data directory.
	client.kill()
	client.nd = client.nd.Restart()
	client.start(cfg)
	var forged int
	nodetestEventually(t, 90*time.Second, "a round evaluated by the forger", func() bool {
		j, err := client.st.Train.Job(job.ID)
		if err != nil {
			return false
		}
		for _, r := range j.History {
			if r.Accuracy == -1 {
				forged = r.Round
				return true
			}
		}
		return false
	})
	j, _ = client.st.Train.Job(job.ID)
	if r := j.History[forged-1]; len(r.Report) != 0 || j.State.Terminal() || j.Accuracy == 0.99 {
		t.Fatalf("round %d took the forged report: accuracy %.4f, state %s", forged, j.Accuracy, j.State)
	}
	// The honest MPVU comes back on the same node; the job waits paused
	// meanwhile so it cannot run out of rounds on forged reports.
	if err := client.st.Train.Pause(job.ID); err != nil {
		t.Fatal(err)
	}
	_ = mpvu.st.Train.Close()
	honest, err := train.New(context.Background(), mpvu.nd.Host(), mpvu.nd.PubSub(), mpvu.nd.Store(),
		mpvu.st.Desc, mpvu.st.Xfer, mpvu.st.Pool, train.WithRoles(train.RoleMPVU), train.WithTestsetLimit(cfg.testLimit))
	if err != nil {
		t.Fatal(err)
	}
	mpvu.st.Train = honest
	if err := client.st.Train.Resume(job.ID); err != nil {
		t.Fatal(err)
	}
	j, err = client.st.Train.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range j.History {
		t.Logf("round %d: accuracy %.4f nodes %d failed %d rejected %d", r.Round, r.Accuracy, len(r.Nodes), len(r.Failed), len(r.Rejected))
	}
	if j.State != train.StateDone || j.Accuracy < spec.Target.Accuracy || j.Resumed < 1 {
		t.Fatalf("after restart: state %s (%s), accuracy %.4f, resumed %d; want done above %.2f after a resume",
			j.State, j.Reason, j.Accuracy, j.Resumed, spec.Target.Accuracy)
	}
	if st := client.st.Train.Stats(); st.Rounds < 1 || st.ReportsIgnored < 1 || st.UpdatesAccepted < st.Rounds {
		t.Errorf("client stats after restart: %+v", st)
	}
	for i, r := range j.History {
		if r.Round != i+1 {
			t.Fatalf("history round %d at index %d: rounds must be consecutive after a resume", r.Round, i)
		}
		for _, n := range r.Nodes {
			if n == data[0].nd.ID().String() || n == data[1].nd.ID().String() || n == data[3].nd.ID().String() || n == data[5].nd.ID().String() {
				t.Fatalf("round %d averaged an update of excluded node %s", r.Round, n)
			}
		}
	}
}

// forger replaces the MPVU's evaluation handler with one that answers
// every request with a well-formed report for the right model and nonce,
// claiming 99%, but signed by a key that is not the MPVU's.
func forger(t *testing.T, f *fedNode) {
	t.Helper()
	_ = f.st.Train.Close() // removes the honest handler
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	other, _ := peer.IDFromPrivateKey(key)
	f.nd.Host().SetStreamHandler(train.EvalProtocol, func(st network.Stream) {
		defer st.Close()
		br := bufio.NewReader(st)
		if _, err := br.ReadByte(); err != nil {
			return
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n > train.MaxEvalRequestBytes {
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		req, err := train.UnmarshalEvalRequest(b)
		if err != nil {
			return
		}
		env, err := train.SealEvalReport(&train.EvalReport{Model: req.Model, Arch: req.Arch, Testset: "forged",
			Accuracy: 0.99, Loss: 0.01, Samples: 10000, Time: time.Now().UnixMilli(), Evaluator: other.String(), Nonce: req.Nonce}, key)
		if err != nil {
			return
		}
		hdr := binary.AppendUvarint([]byte{0}, uint64(len(env)))
		_, _ = st.Write(append(hdr, env...))
	})
}

func nodetestEventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

var _ = errors.New
var _ = fmt.Sprint
