package infer_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/routing"
	"github.com/daitn/daitn/taskpool"
)

// poolFederation starts a bootstrap node, a host serving the trained model
// (published after the host started, so its pool agent comes from the
// catalog poll) and a client, and waits until the client's gossip sees the
// host on the infer pool's topic.
func poolFederation(t *testing.T, weights []byte) (h, client *nodetest.Node, slot string) {
	t.Helper()
	nodes := federation(t, 3)
	h, client = nodes[1], nodes[2]
	slot = host(t, h, "digits-2nn", 0.9, weights)
	if err := client.Taskpool().JoinPool(infer.DefaultPool); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, "the host's agent on the client's pool topic", func() bool {
		return slices.Contains(client.PubSub().ListPeers(taskpool.TopicName(infer.DefaultPool)), h.ID())
	})
	return h, client, slot
}

// Queries posted to the pool are bid on and answered by the host serving
// the model, with the classes the model gives in process for real MNIST
// test digits; the result carries the task id and the agent as host, and
// the answered task is collected. Logs the median latency of pool queries
// (policy best and first) against direct queries.
func TestPoolQueryClassifiesMNIST(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	h, client, slot := poolFederation(t, weights)
	local, err := learn.Unmarshal(weights)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := 20
	if testing.Short() {
		n = 8
	}
	var best, first, direct []time.Duration
	for i := 0; i < n; i++ {
		x := test.X[i*784 : (i+1)*784]
		want, _, _ := local.Predict(x)
		for _, policy := range []taskpool.Policy{"", taskpool.First} {
			t0 := time.Now()
			res, err := client.Infer().QueryViaPool(ctx, infer.PoolSpec{Skill: skill, Policy: policy}, pngDigit(t, x))
			if err != nil {
				t.Fatalf("digit %d (policy %q): %v", i, policy, err)
			}
			if policy == "" {
				best = append(best, time.Since(t0))
			} else {
				first = append(first, time.Since(t0))
			}
			if res.Class != want || res.Host != h.ID() || res.Model != slot || res.Task == "" || res.Confidence != res.Probs[res.Class] {
				t.Fatalf("digit %d: %+v, want class %d from %s model %s with a task id", i, res, want, h.ID(), slot)
			}
			if _, err := client.Taskpool().Status(res.Task); !errors.Is(err, taskpool.ErrNotFound) {
				t.Fatalf("answered task %s still on the client (%v), want it collected", res.Task, err)
			}
		}
	}
	waitEligible(t, client, 1)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := client.Infer().Query(ctx, routing.QuerySpec{Skill: skill}, pngDigit(t, test.X[i*784:(i+1)*784])); err != nil {
			t.Fatal(err)
		}
		direct = append(direct, time.Since(t0))
	}
	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	t.Logf("p50 of %d queries on loopback: pool best %v, pool first %v, direct %v", n, p50(best), p50(first), p50(direct))
}

// The client posts, its node stops before the host answers (the host's
// only query slot is held, so the agent's handler waits) and comes back on
// the same data directory: the host keeps the result in its outbox while
// the client is away and delivers it when it returns, and the client reads
// the answer by task id.
func TestPoolResultSurvivesClientRestart(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	h, client, slot := poolFederation(t, weights)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	release := h.Infer().HoldSlots(1)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	id, err := client.Infer().PostQuery(ctx, infer.PoolSpec{Skill: skill, Policy: taskpool.First}, pngDigit(t, test.X[:784]))
	if err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, "the task assigned to the host", func() bool {
		st, err := client.Taskpool().Status(id)
		return err == nil && st.State == taskpool.StateAssigned && st.Holder == h.ID().String()
	})
	// A wait that ends early says which task to collect.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = client.Infer().PoolResult(short, id)
	cancelShort()
	var pe *infer.PendingError
	if !errors.As(err, &pe) || pe.TaskID != id || !errors.Is(err, infer.ErrPending) || !strings.Contains(err.Error(), id) {
		t.Fatalf("early wait: %v, want a pending error naming task %s", err, id)
	}

	client.Kill()
	released = true
	release()
	nodetest.Eventually(t, 20*time.Second, "the result in the host's outbox", func() bool {
		return h.Taskpool().Outbox() == 1
	})
	client = client.Restart()
	res, err := client.Infer().PoolResult(ctx, id)
	if err != nil {
		t.Fatalf("collect after restart: %v", err)
	}
	if res.Class != int(test.Y[0]) || res.Host != h.ID() || res.Model != slot || res.Task != id {
		t.Fatalf("after restart: %+v, want class %d from %s", res, test.Y[0], h.ID())
	}
	nodetest.Eventually(t, 10*time.Second, "the host's outbox empty", func() bool { return h.Taskpool().Outbox() == 0 })
	if _, err := client.Infer().PoolResult(ctx, id); !errors.Is(err, taskpool.ErrNotFound) {
		t.Fatalf("second collect: %v, want not found (collected)", err)
	}
}

// Input the model cannot take fails the task with the host's reason, as
// ErrBadInput; input over the inline limit is refused before posting; the
// host keeps answering good queries through the pool and directly.
func TestPoolBadInputFailsTask(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	h, client, _ := poolFederation(t, weights)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var big bytes.Buffer
	if err := png.Encode(&big, image.NewGray(image.Rect(0, 0, 64, 64))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, want string
		in         []byte
	}{
		{"64x64 png", "28x28", big.Bytes()},
		{"odd raw bytes", "784", []byte("not an image and not float32 values")},
	} {
		_, err := client.Infer().QueryViaPool(ctx, infer.PoolSpec{Skill: skill, Policy: taskpool.First}, c.in)
		var he *infer.HostError
		if !errors.Is(err, infer.ErrBadInput) || !errors.As(err, &he) || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v, want a failed task saying bad input and %q", c.name, err, c.want)
		}
	}
	if _, err := client.Infer().PostQuery(ctx, infer.PoolSpec{Skill: skill}, make([]byte, infer.MaxPoolInputBytes+1)); !errors.Is(err, infer.ErrBadInput) ||
		!strings.Contains(err.Error(), "inline") {
		t.Fatalf("oversized input: %v, want refused before posting", err)
	}
	// A task id that names some other kind of task is refused, not decoded.
	other, err := client.Taskpool().Post(ctx, taskpool.TaskSpec{Pool: "other", Kind: "text", Input: []byte("hi"), Deadline: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Infer().PoolResult(ctx, other.ID); !errors.Is(err, infer.ErrNotQuery) || !strings.Contains(err.Error(), `"text"`) {
		t.Fatalf("result of a text task: %v, want ErrNotQuery naming its kind", err)
	}
	if _, err := client.Infer().QueryViaPool(ctx, infer.PoolSpec{Skill: "no-such-skill", Deadline: time.Second}, pngDigit(t, test.X[:784])); err == nil ||
		!strings.Contains(err.Error(), "expired") {
		t.Fatalf("skill nobody serves: %v, want the task expired", err)
	}
	res, err := client.Infer().QueryViaPool(ctx, infer.PoolSpec{Skill: skill, Policy: taskpool.First}, pngDigit(t, test.X[:784]))
	if err != nil || res.Class != int(test.Y[0]) || res.Host != h.ID() {
		t.Fatalf("good query after the bad ones: %v %+v", err, res)
	}
	var viaAPI node.InferResponse
	api, err := oam.Dial(client.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Call(ctx, "POST", "/v1/infer", node.InferRequest{Skill: skill, Pool: infer.DefaultPool, Input: pngDigit(t, test.X[:784])}, &viaAPI); err != nil ||
		viaAPI.Class != int(test.Y[0]) || viaAPI.Host != h.ID() || viaAPI.Task == "" {
		t.Fatalf("pool query through the API: %v, %+v", err, viaAPI)
	}
	if st := h.Infer().Stats(); st.BadInput < 2 || st.Served < 2 {
		t.Fatalf("host stats %+v, want >= 2 bad inputs and >= 2 served", st)
	}
}

// With `pool = ""` a host bids on no pool: a pool query for its skill
// expires unanswered while direct queries still reach it; a pool setting
// that is not a string is refused at start with the field named.
func TestPoolOffServesNone(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := nodetest.Start(t, 2, nodetest.WithConfig(func(i int, c *node.Config) {
		c.Services = map[string]map[string]any{"overlay": {"interval": "2s"}, "infer": {"pool": ""}}
	}))
	h, client := nodes[0], nodes[1]
	host(t, h, "digits-2nn", 0.9, weights)
	waitEligible(t, client, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := pngDigit(t, test.X[:784])
	if _, err := client.Infer().QueryViaPool(ctx, infer.PoolSpec{Skill: skill, Policy: taskpool.First, Deadline: 2 * time.Second}, in); err == nil ||
		!strings.Contains(err.Error(), "expired") {
		t.Fatalf("pool query with no host on the pool: %v, want the task expired", err)
	}
	// More than a catalog poll after the model was published, the host
	// has not joined the pool's topic: it runs no agent there.
	if slices.Contains(h.PubSub().GetTopics(), taskpool.TopicName(infer.DefaultPool)) {
		t.Fatal("the host joined the infer pool with pool = \"\"")
	}
	if res, err := client.Infer().Query(ctx, routing.QuerySpec{Skill: skill}, in); err != nil || res.Host != h.ID() {
		t.Fatalf("direct query: %v %+v", err, res)
	}

	cfg := nodetest.Config(t.TempDir())
	cfg.Services = map[string]map[string]any{"infer": {"pool": int64(3)}}
	nd, err := node.New(ctx, cfg, node.WithLogger(nodetest.Logger("bad")))
	if err == nil {
		_ = nd.Close()
		t.Fatal("a node started with services.infer.pool = 3")
	}
	if !strings.Contains(err.Error(), "services.infer.pool") {
		t.Fatalf("bad pool setting: %v, want the field named", err)
	}
}
