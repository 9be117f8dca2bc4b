// Command taskpool measures the task pool on loopback: posting-to-assignment
// latency (p50/p99) and sustained tasks per second with N agents for each
// policy, and the size of a posting on the wire. Every number is measured in
// this run on real libp2p hosts (TCP on 127.0.0.1, GossipSub, streams).
//
//	go run ./bench/taskpool -agents 20 -tasks 300
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/daitn/daitn/internal/gossip"
	"github.com/daitn/daitn/internal/store"
	"github.com/daitn/daitn/taskpool"
)

func main() {
	agents := flag.Int("agents", 20, "agents")
	tasks := flag.Int("tasks", 300, "tasks in the throughput burst")
	probes := flag.Int("probes", 100, "tasks posted one at a time for the latency figures")
	window := flag.Duration("window", 100*time.Millisecond, "bid window of the best policy")
	pebble := flag.Bool("pebble", true, "poster and agents on fsync'd Pebble stores (as a node runs), not in memory")
	flag.Parse()

	fmt.Printf("task pool on loopback: 1 poster, %d agents (capacity 1, handler returns at once), stores: %s\n",
		*agents, map[bool]string{true: "Pebble, fsync'd", false: "in memory"}[*pebble])
	postingSize()
	fmt.Printf("\n%-8s %12s %12s %12s %14s %18s %8s\n", "policy", "lat p50", "lat p99", "lat max", "burst tasks/s", "burst", "retried")
	for _, pol := range []taskpool.Policy{taskpool.First, taskpool.Best, taskpool.Approve} {
		r, err := runPolicy(pol, *agents, *tasks, *probes, *window, *pebble)
		if err != nil {
			log.Fatalf("%s: %v", pol, err)
		}
		fmt.Printf("%-8s %12v %12v %12v %14.0f %18s %8d\n", pol, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond),
			r.max.Round(10*time.Microsecond), r.tps, fmt.Sprintf("%d in %v", *tasks, r.burst.Round(time.Millisecond)), r.retried)
	}
	fmt.Printf("\nlatency: Post returned -> poster recorded the agent's ack (tasks posted one at a time).\n")
	fmt.Printf("best waits for its bid window (%v); approve includes a client approving the first bid it sees (polling every 5ms).\n", *window)
}

// postingSize prints the bytes of a posting: the signed envelope, and the
// GossipSub message that carries it.
func postingSize() {
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	key := h.Peerstore().PrivKey(h.ID())
	for _, in := range []int{0, 1 << 10, taskpool.MaxInlineInput} {
		now := time.Now().UnixMilli()
		t := taskpool.Task{ID: taskpool.NewTaskID(), Pool: "demo", Kind: "classify", Skill: "classify-digits",
			Deadline: now + 60000, MaxPrice: 5, Tier: taskpool.Gold, Policy: taskpool.Best, Poster: h.ID().String(),
			LeaseMs: 30000, BidWindowMs: 500, Created: now}
		if in > 0 {
			t.Input = make([]byte, in)
		}
		env, err := taskpool.SealPosting(&t, key)
		if err != nil {
			log.Fatal(err)
		}
		topic := taskpool.TopicName(t.Pool)
		from := []byte(h.ID())
		m := &pb.Message{From: from, Data: env, Seqno: make([]byte, 8), Topic: &topic, Signature: make([]byte, 64)}
		rpc := &pb.RPC{Publish: []*pb.Message{m}}
		fmt.Printf("posting with %6d B inline input: envelope %6d B, gossip RPC %6d B\n", in, len(env), proto.Size(rpc))
	}
}

type result struct {
	p50, p99, max time.Duration
	tps           float64
	burst         time.Duration
	retried       int
}

func newHost() (host.Host, *pubsub.PubSub, error) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.ResourceManager(nil))
	if err != nil {
		return nil, nil, err
	}
	ps, err := pubsub.NewGossipSub(context.Background(), h, gossip.Options()...)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, ps, nil
}

func runPolicy(pol taskpool.Policy, nAgents, nTasks, nProbes int, window time.Duration, pebble bool) (result, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := []taskpool.Option{taskpool.WithLogger(quiet), taskpool.WithTick(2 * time.Millisecond),
		taskpool.WithDefaults(30*time.Second, window, 5*time.Minute), taskpool.WithPostingRate(10000, 100000)}
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	tmp, err := os.MkdirTemp("", "taskpool-bench")
	if err != nil {
		return result{}, err
	}
	closers = append(closers, func() { os.RemoveAll(tmp) })
	newStore := func(i int) (ds.Batching, error) {
		if !pebble {
			return dssync.MutexWrap(ds.NewMapDatastore()), nil
		}
		s, err := store.Open(fmt.Sprintf("%s/%d", tmp, i))
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { s.Close() })
		return s, nil
	}
	var posterPS *pubsub.PubSub
	start := func(i int) (*taskpool.Service, host.Host, error) {
		h, ps, err := newHost()
		if i == 0 {
			posterPS = ps
		}
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { h.Close() })
		st, err := newStore(i)
		if err != nil {
			return nil, nil, err
		}
		s, err := taskpool.New(context.Background(), h, ps, st, opts...)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { s.Close() })
		return s, h, nil
	}
	poster, ph, err := start(0)
	if err != nil {
		return result{}, err
	}
	for i := 1; i <= nAgents; i++ {
		s, h, err := start(i)
		if err != nil {
			return result{}, err
		}
		if err := h.Connect(context.Background(), peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
			return result{}, err
		}
		if _, err := s.RunAgent(taskpool.AgentConfig{Pool: "bench", Price: float64(i), Expected: time.Duration(i) * time.Millisecond,
			BidAhead: 2, Handler: func(ctx context.Context, t taskpool.Task) ([]byte, error) { return []byte("ok"), nil }}); err != nil {
			return result{}, err
		}
	}
	if err := poster.JoinPool("bench"); err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deadline := time.Now().Add(20 * time.Second)
	for len(posterPS.ListPeers(taskpool.TopicName("bench"))) < nAgents {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("agents did not join the topic")
		}
		time.Sleep(20 * time.Millisecond)
	}

	var mu sync.Mutex
	assigned := map[string]time.Time{}
	done := map[string]bool{}
	evs, err := poster.Watch(ctx, "")
	if err != nil {
		return result{}, err
	}
	go func() {
		for ev := range evs {
			mu.Lock()
			if _, ok := assigned[ev.TaskID]; !ok && (ev.State == taskpool.StateAssigned || ev.State == taskpool.StateDone) {
				assigned[ev.TaskID] = ev.Time
			}
			if ev.State.Terminal() {
				done[ev.TaskID] = true
			}
			mu.Unlock()
		}
	}()
	if pol == taskpool.Approve {
		go func() {
			tk := time.NewTicker(5 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
				for _, st := range poster.List() {
					if st.State == taskpool.StateOpen && len(st.Bids) > 0 {
						p, _ := peer.Decode(st.Bids[0].Bidder)
						go poster.Approve(ctx, st.Task.ID, p)
					}
				}
			}
		}()
	}
	waitDone := func(ids []string, d time.Duration) error {
		end := time.Now().Add(d)
		for {
			mu.Lock()
			n := 0
			for _, id := range ids {
				if done[id] {
					n++
				}
			}
			mu.Unlock()
			if n == len(ids) {
				return nil
			}
			if time.Now().After(end) {
				return fmt.Errorf("%d of %d tasks done after %v", n, len(ids), d)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Latency: one task at a time.
	var lats []time.Duration
	for i := 0; i < nProbes; i++ {
		t0 := time.Now()
		t, err := poster.Post(ctx, taskpool.TaskSpec{Pool: "bench", Kind: "k", Policy: pol, MaxPrice: 1000})
		if err != nil {
			return result{}, err
		}
		if err := waitDone([]string{t.ID}, 30*time.Second); err != nil {
			return result{}, err
		}
		mu.Lock()
		lats = append(lats, assigned[t.ID].Sub(t0))
		mu.Unlock()
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	r := result{p50: lats[len(lats)/2], p99: lats[(len(lats)*99)/100], max: lats[len(lats)-1]}
	// Throughput: a burst of nTasks.
	t0 := time.Now()
	ids := make([]string, 0, nTasks)
	for i := 0; i < nTasks; i++ {
		t, err := poster.Post(ctx, taskpool.TaskSpec{Pool: "bench", Kind: "k", Policy: pol, MaxPrice: 1000})
		if err != nil {
			return result{}, err
		}
		ids = append(ids, t.ID)
	}
	if err := waitDone(ids, 5*time.Minute); err != nil {
		return result{}, err
	}
	r.burst = time.Since(t0)
	r.tps = float64(nTasks) / r.burst.Seconds()
	for _, id := range ids {
		st, _ := poster.Status(id)
		if st.State != taskpool.StateDone || st.Result == nil {
			return result{}, fmt.Errorf("task %s: %s after %d attempts", id, st.State, len(st.History))
		}
		// More than one attempt happens when an offer got no answer in
		// time and its lease ran out: counted, not hidden.
		r.retried += len(st.History) - 1
	}
	return r, nil
}
