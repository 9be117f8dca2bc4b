package taskpool

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/internal/store"
)

// TestKilledHolderLeaseExpires: the agent holding a task dies; after the
// lease the task is reposted, another agent finishes it, and the dead
// agent's result, delivered when it comes back, is ignored.
func TestKilledHolderLeaseExpires(t *testing.T) {
	nw := p2ptest.New(t, 3, p2ptest.WithPubSub())
	pstore := memStore()
	poster := newSvc(t, nw.Peers[0], pstore)
	deadDir := t.TempDir()
	deadStore, err := store.Open(deadDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deadStore.Close() })
	dead, err := New(context.Background(), nw.Peers[1].Host, nw.Peers[1].PubSub, deadStore, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan Task, 1)
	if _, err := dead.RunAgent(AgentConfig{Pool: "k", Handler: func(ctx context.Context, tk Task) ([]byte, error) {
		started <- tk
		<-ctx.Done()
		return nil, ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, poster, "k", 1)
	tk, err := poster.Post(context.Background(), TaskSpec{Pool: "k", Kind: "k", Lease: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	p2ptest.Eventually(t, 10*time.Second, "assigned", func() bool {
		st, _ := poster.Status(tk.ID)
		return st.State == StateAssigned
	})
	st, _ := poster.Status(tk.ID)
	if st.Holder != nw.Peers[1].Host.ID().String() {
		t.Fatalf("status %+v, want assigned to the first agent", st)
	}
	oldEpoch := st.Epoch
	// Kill: the service goes away mid-task, renewals stop.
	dead.Close()

	var ran atomic.Int32
	alive := newSvc(t, nw.Peers[2], memStore())
	if _, err := alive.RunAgent(AgentConfig{Pool: "k", Handler: func(ctx context.Context, tk Task) ([]byte, error) {
		ran.Add(1)
		return []byte("from the live agent"), nil
	}}); err != nil {
		t.Fatal(err)
	}
	final, err := poster.WaitResult(context.Background(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != StateDone || final.Result.Agent != nw.Peers[2].Host.ID().String() || final.Epoch <= oldEpoch {
		t.Fatalf("final %+v, want done by the live agent at a later epoch", final)
	}
	if len(final.History) < 2 || final.History[0].Outcome != "lease expired" {
		t.Fatalf("history %+v, want a lease expiry then the finish", final.History)
	}
	// The expired lease counts against the dead agent, in the reputation
	// book and in the store.
	book := map[string][2]int{}
	for _, r := range poster.Reputations() {
		book[r.Agent.String()] = [2]int{r.OK, r.Failed}
	}
	stored := storedRep(t, pstore)
	for _, c := range []struct {
		agent      string
		ok, failed int
	}{{nw.Peers[1].Host.ID().String(), 0, 1}, {nw.Peers[2].Host.ID().String(), 1, 0}} {
		if b, r := book[c.agent], stored[c.agent]; b != [2]int{c.ok, c.failed} || r.OK != c.ok || r.Failed != c.failed {
			t.Fatalf("agent %s: book %v, stored %+v, want %d ok %d failed", c.agent, b, r, c.ok, c.failed)
		}
	}

	// The dead agent comes back with a result for its old epoch in its
	// outbox (as if its handler had finished while it was cut off).
	late := Result{TaskID: tk.ID, Poster: tk.Poster, Agent: nw.Peers[1].Host.ID().String(), Epoch: oldEpoch,
		OK: true, Output: []byte("late"), Time: time.Now().UnixMilli()}
	env, err := seal(resultRec{&late}, nw.Peers[1].Host.Peerstore().PrivKey(nw.Peers[1].Host.ID()))
	if err != nil {
		t.Fatal(err)
	}
	h := &held{Task: final.Task, Epoch: oldEpoch, ResultEnv: env}
	b, _ := encMode.Marshal(h)
	if err := deadStore.Put(context.Background(), heldKey(h.key()), b); err != nil {
		t.Fatal(err)
	}
	back, err := New(context.Background(), nw.Peers[1].Host, nw.Peers[1].PubSub, deadStore, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	p2ptest.Eventually(t, 10*time.Second, "late result delivered and dropped", func() bool { return back.Outbox() == 0 })
	after, _ := poster.Status(tk.ID)
	if string(after.Result.Output) != "from the live agent" || poster.Stats().LateResults != 1 || poster.Stats().ResultsApplied != 1 {
		t.Fatalf("after late result: output %q, stats %+v", after.Result.Output, poster.Stats())
	}
	// The live agent's result again: acknowledged, not applied twice.
	resp := poster.applyResult(final.Result, nil)
	if resp.Code != codeOK || poster.Stats().ResultsApplied != 1 {
		t.Fatalf("repeat result: %+v, applied %d", resp, poster.Stats().ResultsApplied)
	}
	if ran.Load() != 1 {
		t.Fatalf("live agent ran %d times", ran.Load())
	}
}

// TestPosterRestartResultsArrive: the poster stops before results come
// back; agents keep them (one agent even restarts); when the poster returns
// on the same key and store, every result arrives exactly once.
func TestPosterRestartResultsArrive(t *testing.T) {
	const n = 12
	key := newKey(t)
	dir := t.TempDir()
	ph, pps := keyedHost(t, key, "")
	addr := ph.Addrs()[0].String()
	pstore, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	poster, err := New(context.Background(), ph, pps, pstore, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}

	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	gate := make(chan struct{})
	agents := make([]*Service, 2)
	stores := make([]interface{ Close() error }, 2)
	dirs := []string{t.TempDir(), t.TempDir()}
	var running []*Agent
	for i, p := range nw.Peers {
		st, err := store.Open(dirs[i])
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = st
		s, err := New(context.Background(), p.Host, p.PubSub, st, testOpts()...)
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = s
		ag, err := s.RunAgent(AgentConfig{Pool: "r", Capacity: n, Handler: func(ctx context.Context, tk Task) ([]byte, error) {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []byte("r:" + tk.ID), nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		running = append(running, ag)
		p2ptest.Connect(t, p.Host, ph)
	}
	t.Cleanup(func() {
		for i := range agents {
			agents[i].Close()
			stores[i].Close()
		}
	})
	waitTopicPeers(t, poster, "r", 2)
	var ids []string
	for i := 0; i < n; i++ {
		// A lease long enough that a starved CI machine does not expire it
		// before the poster stops: expiry is TestKilledHolderLeaseExpires.
		tk, err := poster.Post(context.Background(), TaskSpec{Pool: "r", Kind: "k", Lease: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	// Both sides agree: the poster has assigned all, the agents run all.
	p2ptest.Eventually(t, 60*time.Second, "all assigned", func() bool {
		for _, id := range ids {
			if st, _ := poster.Status(id); st.State != StateAssigned {
				return false
			}
		}
		return running[0].Active()+running[1].Active() == n
	})
	// Stop the poster, then let the agents finish.
	poster.Close()
	ph.Close()
	pstore.Close()
	close(gate)
	p2ptest.Eventually(t, 60*time.Second, "results in the outboxes", func() bool {
		return agents[0].Outbox()+agents[1].Outbox() == n
	})
	// Agent 1 restarts too while the poster is away: its outbox is on disk.
	held1 := agents[1].Outbox()
	agents[1].Close()
	stores[1].Close()
	st1, err := store.Open(dirs[1])
	if err != nil {
		t.Fatal(err)
	}
	stores[1] = st1
	agents[1], err = New(context.Background(), nw.Peers[1].Host, nw.Peers[1].PubSub, st1, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if got := agents[1].Outbox(); got != held1 {
		t.Fatalf("restarted agent has %d results in its outbox, want %d", got, held1)
	}

	// Poster back: same key, same address, same store.
	ph2, pps2 := keyedHost(t, key, addr)
	pstore2, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	poster2, err := New(context.Background(), ph2, pps2, pstore2, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { poster2.Close(); ph2.Close(); pstore2.Close() })
	for _, id := range ids {
		if st, err := poster2.Status(id); err != nil || st.State != StateAssigned {
			t.Fatalf("after restart %s: %+v %v, want assigned", id, st.State, err)
		}
	}
	p2ptest.Eventually(t, 30*time.Second, "all results at the restarted poster", func() bool {
		for _, id := range ids {
			if st, _ := poster2.Status(id); st.State != StateDone {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		st, _ := poster2.Status(id)
		if string(st.Result.Output) != "r:"+id || len(st.History) != 1 {
			t.Fatalf("task %s: output %q history %+v", id, st.Result.Output, st.History)
		}
	}
	if got := poster2.Stats().ResultsApplied; got != n {
		t.Fatalf("applied %d results, want %d", got, n)
	}
	p2ptest.Eventually(t, 10*time.Second, "outboxes empty", func() bool {
		return agents[0].Outbox()+agents[1].Outbox() == 0
	})
}
