package taskpool

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/internal/store"
)

// ownGoroutines lists the stacks of goroutines running taskpool code other
// than tests.
func ownGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "daitn/taskpool.(*") || strings.Contains(g, "daitn/taskpool.(*Agent)") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseWhileAgentHoldsLease closes both services while the agent is
// mid-task holding a lease, then closes their Pebble stores the way the
// node does. Nothing of the services may touch a store afterwards (Pebble
// panics on use after Close), late requests get errors, and no taskpool
// goroutine is left.
func TestCloseWhileAgentHoldsLease(t *testing.T) {
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	pstore, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	astore, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	poster := newSvc(t, nw.Peers[0], pstore)
	agent := newSvc(t, nw.Peers[1], astore)

	started := make(chan struct{})
	stopped := make(chan struct{})
	var once sync.Once
	if _, err := agent.RunAgent(AgentConfig{Pool: "close", Handler: func(ctx context.Context, tk Task) ([]byte, error) {
		once.Do(func() { close(started) })
		<-ctx.Done()
		close(stopped)
		return nil, ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, poster, "close", 1)
	tk, err := poster.Post(context.Background(), TaskSpec{Pool: "close", Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never started")
	}
	var st Status
	p2ptest.Eventually(t, 10*time.Second, "assigned", func() bool {
		st, _ = poster.Status(tk.ID)
		return st.State == StateAssigned
	})
	k := tk.Poster + "/" + tk.ID

	// Late traffic racing the Close: renewals and results keep arriving at
	// the poster, cancel notices at the agent.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			poster.dispatch(agent.self, &wireMsg{Op: opRenew, TaskID: tk.ID, Epoch: st.Epoch})
			agent.dispatch(poster.self, &wireMsg{Op: opLost, TaskID: tk.ID})
			runtime.Gosched()
		}
	}()

	if err := agent.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Close returned while the handler was still running")
	}
	if err := astore.Close(); err != nil {
		t.Fatal(err)
	}
	// What a stream handler in flight during Close would do next.
	agent.forgetHeld(k)
	if err := agent.saveHeld(&held{Task: tk, Epoch: st.Epoch}); !errors.Is(err, ErrClosed) {
		t.Fatalf("saveHeld after Close: %v, want ErrClosed", err)
	}
	agent.dispatch(poster.self, &wireMsg{Op: opCancel, TaskID: tk.ID, Epoch: st.Epoch})

	if err := poster.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := pstore.Close(); err != nil {
		t.Fatal(err)
	}
	if err := poster.Cancel(context.Background(), tk.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("cancel after Close: %v, want ErrClosed", err)
	}
	if _, err := poster.Collect(context.Background(), tk.ID); err == nil {
		t.Fatal("collect after Close succeeded")
	}
	poster.dispatch(agent.self, &wireMsg{Op: opRenew, TaskID: tk.ID, Epoch: st.Epoch})

	var left []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Goroutines are gone when Close returns; only their last deferred
		// frames may still be unwinding.
		if left = ownGoroutines(); len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("%d taskpool goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
