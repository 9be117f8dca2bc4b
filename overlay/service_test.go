package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/gossip"
	"github.com/daitn/daitn/internal/p2ptest"
)

// testInterval is the beacon interval of many-node tests. The CI machine
// has 2 cores shared by every package's tests; under -race a delivered
// beacon costs ~3ms of CPU (GossipSub's signature check and ours), so 30
// nodes beaconing every 3s need ~0.9 of a core, more than this package gets
// while the others run: beacons queue up and expire before they are read.
// Every 10s they need ~0.3.
func testInterval() time.Duration {
	if raceBuild {
		return 10 * time.Second
	}
	return time.Second
}

// testTTL is the beacon lifetime in intervals.
func testTTL() int { return 3 }

// testOpts: beacons every testInterval, gone after 3 missed.
func testOpts(extra ...Option) []Option {
	return append([]Option{WithInterval(testInterval()), WithTTLFactor(testTTL()),
		WithMinInterval(100 * time.Millisecond), WithProbe(testInterval(), 4)}, extra...)
}

// mesh adds ring and chord links to p2ptest's star so GossipSub forms a
// real mesh instead of relaying everything through peer 0.
func mesh(t *testing.T, nw *p2ptest.Net) {
	n := len(nw.Peers)
	for i := 1; i < n; i++ {
		for _, k := range []int{1, 5} {
			j := (i + k) % n
			if j != 0 && j != i {
				p2ptest.Connect(t, nw.Peers[i].Host, nw.Peers[j].Host)
			}
		}
	}
}

func newSvc(t *testing.T, h host.Host, ps *pubsub.PubSub, opts ...Option) *Service {
	t.Helper()
	s, err := New(context.Background(), h, ps, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatalf("overlay.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dataItem(owner peer.ID, id string) *Item {
	now := time.Now()
	return &Item{ID: id, Kind: KindData, Owner: owner, Task: "digits-classification",
		Samples: 600, LabelDist: map[string]int64{"0": 300, "1": 300},
		Issued: now, Expires: now.Add(time.Hour)}
}

func rolesFor(i int) []string {
	if i%3 == 0 {
		return []string{"compute", "data"}
	}
	return []string{"data"}
}

// restartHost starts a fresh host with key (same peer ID) and GossipSub, as
// a restarted node would, connected to boot.
func restartHost(t *testing.T, key crypto.PrivKey, boot host.Host) (host.Host, *pubsub.PubSub) {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(), libp2p.ResourceManager(nil))
	if err != nil {
		t.Fatalf("restart host: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ps, err := pubsub.NewGossipSub(context.Background(), h, gossip.Options()...)
	if err != nil {
		t.Fatalf("restart gossipsub: %v", err)
	}
	p2ptest.Connect(t, h, boot)
	return h, ps
}

func TestMap30NodesJoinLeaveRestart(t *testing.T) {
	const n = 30
	t0 := time.Now()
	net := p2ptest.New(t, n, p2ptest.WithPubSub())
	mesh(t, net)
	t.Logf("started and connected %d hosts in %v", n, time.Since(t0))
	svcs := make([]*Service, n)
	for i, p := range net.Peers {
		svcs[i] = newSvc(t, p.Host, p.PubSub, testOpts(WithRoles(rolesFor(i)...))...)
		if err := svcs[i].AddItem(dataItem(p.Host.ID(), fmt.Sprintf("d-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var why string
	complete := func(s *Service, alive func(int) bool) bool {
		snap := s.Snapshot()
		for j, q := range net.Peers {
			pi := snap.Peer(q.Host.ID())
			if !alive(j) {
				if pi != nil {
					why = fmt.Sprintf("%s still has dead peer %d", s.h.ID(), j)
					return false
				}
				continue
			}
			if pi == nil || RolesString(pi.Roles) != RolesString(rolesFor(j)) ||
				len(pi.Descriptors) != 1 || pi.Descriptors[0] != fmt.Sprintf("d-%02d", j) {
				np, _ := snap.Len()
				why = fmt.Sprintf("%s lacks peer %d (has %d peers): %+v stats %+v", s.h.ID(), j, np, pi, s.Stats())
				return false
			}
		}
		return true
	}
	defer func() {
		if t.Failed() {
			t.Log("last unmet condition:", why)
		}
	}()
	all := func(int) bool { return true }
	start := time.Now()
	p2ptest.Eventually(t, 90*time.Second, "every map has all 30 peers with roles and descriptors", func() bool {
		for _, s := range svcs {
			if !complete(s, all) {
				return false
			}
		}
		return true
	})
	t.Logf("30-node map converged in %v", time.Since(start))

	// Kill the last node: its host goes away without a goodbye.
	victim := n - 1
	key := net.Peers[victim].Host.Peerstore().PrivKey(net.Peers[victim].Host.ID())
	_ = svcs[victim].Close()
	_ = net.Peers[victim].Host.Close()
	notVictim := func(j int) bool { return j != victim }
	start = time.Now()
	p2ptest.Eventually(t, 90*time.Second, "killed node leaves every map", func() bool {
		for i, s := range svcs[:victim] {
			_ = i
			if !complete(s, notVictim) {
				return false
			}
		}
		return true
	})
	t.Logf("killed node left every map in %v (beacon lifetime %v)", time.Since(start), time.Duration(testTTL())*testInterval())

	// Restart it with the same identity.
	h, ps := restartHost(t, key, net.Peers[0].Host)
	net.Peers[victim].Host = h
	svcs[victim] = newSvc(t, h, ps, testOpts(WithRoles(rolesFor(victim)...))...)
	if err := svcs[victim].AddItem(dataItem(h.ID(), fmt.Sprintf("d-%02d", victim))); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	p2ptest.Eventually(t, 90*time.Second, "restarted node is back in every map", func() bool {
		for _, s := range svcs {
			if !complete(s, all) {
				return false
			}
		}
		return true
	})
	t.Logf("restarted node back in every map in %v", time.Since(start))
}

func testLogger(t *testing.T) *slog.Logger {
	lvl := slog.LevelInfo
	if os.Getenv("OVERLAY_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// TestEventsItemsAndClose: subscribers see a peer join with its item, see
// it leave when its beacons stop, and every channel closes on Close.
func TestEventsItemsAndClose(t *testing.T) {
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	iv := 300 * time.Millisecond
	if raceBuild {
		iv = time.Second
	}
	opts := []Option{WithInterval(iv), WithTTLFactor(3), WithMinInterval(50 * time.Millisecond)}
	a := newSvc(t, nw.Peers[0].Host, nw.Peers[0].PubSub, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := a.Subscribe(ctx)
	b, err := New(context.Background(), nw.Peers[1].Host, nw.Peers[1].PubSub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	bid := nw.Peers[1].Host.ID()
	if err := b.AddItem(dataItem(bid, "b-data")); err != nil {
		t.Fatal(err)
	}
	if err := a.AddItem(&Item{ID: "", Kind: KindData, Owner: bid}); err == nil {
		t.Fatal("item without id accepted")
	}
	// The item reaches a's map through the descriptor service in a real
	// node; here we feed it directly, and b's beacon must list it.
	if err := a.AddItem(dataItem(bid, "b-data")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !cond() {
			select {
			case ev, ok := <-evs:
				if !ok {
					t.Fatalf("events closed while waiting for %s", what)
				}
				seen[ev.Type+" "+ev.ID] = true
			case <-deadline:
				t.Fatalf("timed out waiting for %s; saw %v", what, seen)
			}
		}
	}
	wait("b joins with its descriptor", func() bool {
		p := a.Snapshot().Peer(bid)
		return seen[EventPeerJoined+" "+bid.String()] && p != nil && len(p.Descriptors) == 1 && p.Descriptors[0] == "b-data"
	})
	if !seen[EventItemAdded+" b-data"] {
		t.Fatalf("no item-added event: %v", seen)
	}
	snap := a.Snapshot()
	if !snap.Reachable(snap.Item("b-data")) {
		t.Fatal("b's item not reachable while b beacons")
	}
	_ = b.Close()
	_ = b.Close() // idempotent
	wait("b leaves after its beacon expires", func() bool { return seen[EventPeerLeft+" "+bid.String()] })
	snap = a.Snapshot()
	if snap.Reachable(snap.Item("b-data")) {
		t.Fatal("b's item still reachable after b left")
	}
	_ = a.Close()
	for range evs {
	}
	if ch := a.Subscribe(context.Background()); ch != nil {
		if _, ok := <-ch; ok {
			t.Fatal("subscription after Close is open")
		}
	}
}

// TestReachabilityFromAutoNAT: the beacon carries what libp2p's AutoNAT
// concluded, announced on the host's event bus.
func TestReachabilityFromAutoNAT(t *testing.T) {
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	opts := []Option{WithInterval(time.Second), WithMinInterval(50 * time.Millisecond)}
	a := newSvc(t, nw.Peers[0].Host, nw.Peers[0].PubSub, opts...)
	_ = newSvc(t, nw.Peers[1].Host, nw.Peers[1].PubSub, opts...)
	em, err := nw.Peers[1].Host.EventBus().Emitter(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	for _, c := range []struct {
		r    network.Reachability
		want string
	}{{network.ReachabilityPrivate, ReachPrivate}, {network.ReachabilityPublic, ReachPublic}} {
		if err := em.Emit(event.EvtLocalReachabilityChanged{Reachability: c.r}); err != nil {
			t.Fatal(err)
		}
		p2ptest.Eventually(t, 30*time.Second, "peer 1 announced as "+c.want, func() bool {
			p := a.Snapshot().Peer(nw.Peers[1].Host.ID())
			return p != nil && p.Reach == c.want
		})
	}
}
