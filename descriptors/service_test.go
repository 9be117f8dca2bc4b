package descriptors

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/descriptors/facts"
	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/internal/store"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// mesh adds a ring and chords to p2ptest's star, so GossipSub meshes form
// as they do in a real network (where the DHT connects peers widely) rather
// than every message hanging on the hub's lazy gossip.
func mesh(t *testing.T, nw *p2ptest.Net) *p2ptest.Net {
	n := len(nw.Peers)
	for i := 1; i < n; i++ {
		for _, j := range []int{i%(n-1) + 1, (i+4)%(n-1) + 1} {
			if j != i {
				p2ptest.Connect(t, nw.Peers[i].Host, nw.Peers[j].Host)
			}
		}
	}
	return nw
}

// startAll starts a Service on every peer of nw (gossip and DHT as the
// peers have them).
func startAll(t *testing.T, nw *p2ptest.Net, opts ...Option) []*Service {
	t.Helper()
	var out []*Service
	for _, p := range nw.Peers {
		var rt routing.Routing
		if p.DHT != nil {
			rt = p.DHT
		}
		s, err := New(context.Background(), p.Host, p.PubSub, rt, nil, append([]Option{WithLogger(quietLogger())}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out = append(out, s)
	}
	return out
}

func waitMesh(t *testing.T, svcs []*Service) {
	t.Helper()
	p2ptest.Eventually(t, 20*time.Second, "gossip mesh on "+Topic, func() bool {
		for _, s := range svcs {
			if len(s.topic.ListPeers()) == 0 {
				return false
			}
		}
		return true
	})
}

// findsOnAll polls Find on every service but skip until each finds the
// slot at the wanted seq.
func findsOnAll(t *testing.T, svcs []*Service, skip int, q Query, o FindOptions, sd *Signed, d time.Duration) {
	t.Helper()
	var mu sync.Mutex
	done := make([]bool, len(svcs))
	begin := time.Now()
	defer func() { t.Logf("visible on all %d nodes after %v", len(svcs)-1, time.Since(begin)) }()
	p2ptest.Eventually(t, d, "descriptor visible on every node", func() bool {
		var wg sync.WaitGroup
		for i, s := range svcs {
			mu.Lock()
			ok := done[i] || i == skip
			mu.Unlock()
			if ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				start := time.Now()
				res, _ := s.Find(ctx, q, o)
				if el := time.Since(start); el > 10*time.Second {
					t.Logf("slow find on node %d: %v", i, el)
				}
				for _, r := range res {
					if r.Desc.Slot == sd.Slot && r.Desc.Seq >= sd.Seq {
						if !o.UseGossip && !containsSource(r.Sources, SourceDHT) {
							t.Errorf("node %d: DHT-only find returned sources %v", i, r.Sources)
						}
						mu.Lock()
						done[i] = true
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for i, ok := range done {
			if !ok && i != skip {
				return false
			}
		}
		return true
	})
}

func containsSource(l []Source, s Source) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// waitAnnounced waits until the owner's DHT announcer has put sd's version
// (or a later one): DHT look-ups before that would only burn time.
func waitAnnounced(t *testing.T, s *Service, sd *Signed) {
	t.Helper()
	p2ptest.Eventually(t, 60*time.Second, "DHT announce of "+sd.Name, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.announced[sd.Slot] >= sd.Seq
	})
}

func closeAll(svcs []*Service) {
	for _, s := range svcs {
		_ = s.Close()
	}
}

// TestDiscovery20Nodes runs the three 20-node scenarios on one set
// of hosts (starting 20 DHT hosts is the expensive part), each phase with
// fresh services:
//   - dht-only: gossip off everywhere; found by capability from every other
//     node through the DHT alone;
//   - gossip-only: DHT off everywhere; found through gossip alone;
//   - update: both on; v2 replaces v1 on every node and in the DHT, and v1
//     re-sent afterwards changes nothing.
func TestDiscovery20Nodes(t *testing.T) {
	nw := mesh(t, p2ptest.New(t, 20, p2ptest.WithPubSub(), p2ptest.WithValidator(RecordNamespace, RecordValidator{})))
	ctx := context.Background()

	t.Run("dht-only", func(t *testing.T) {
		// A look-up returns what it has when the find timeout ends; 19
		// nodes querying at once on a loaded CI box need a few seconds.
		svcs := startAll(t, nw, WithGossip(false), WithFindTimeout(4*time.Second))
		defer closeAll(svcs)
		const owner = 7
		sd, err := svcs[owner].Publish(ctx, sample(KindData, "mnist-shard-3"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := svcs[owner].Publish(ctx, sample(KindModel, "mlp"))
		if err != nil {
			t.Fatal(err)
		}
		waitAnnounced(t, svcs[owner], m)
		findsOnAll(t, svcs, owner, Query{Kind: KindData, Task: "Digits-Classification"}, FindOptions{UseDHT: true}, sd, 60*time.Second)
		// Another kind and tag from a handful of nodes (the all-nodes case is
		// the data look-up above; this keeps the -race run short).
		few := []*Service{svcs[0], svcs[owner], svcs[12], svcs[19]}
		findsOnAll(t, few, 1, Query{Kind: KindModel, Skill: "classify-digits"}, FindOptions{UseDHT: true}, m, 60*time.Second)
		// A query that matches nothing finds nothing.
		res, err := svcs[3].Find(ctx, Query{Kind: KindData, Task: "speech"}, FindOptions{UseDHT: true, Timeout: time.Second})
		if err != nil || len(res) != 0 {
			t.Fatalf("speech data: %v, %d results", err, len(res))
		}
	})

	t.Run("gossip-only", func(t *testing.T) {
		svcs := startAll(t, nw, WithDHT(false))
		defer closeAll(svcs)
		waitMesh(t, svcs)
		const owner = 11
		sd, err := svcs[owner].Publish(ctx, sample(KindTestset, "t10k"))
		if err != nil {
			t.Fatal(err)
		}
		findsOnAll(t, svcs, owner, Query{Role: "mpvu"}, FindOptions{UseGossip: true}, sd, 30*time.Second)
		res, _ := svcs[2].Find(ctx, Query{Role: "mpvu"}, FindOptions{UseGossip: true})
		if len(res) != 1 || !(containsSource(res[0].Sources, SourceGossip) || containsSource(res[0].Sources, SourceSync)) || containsSource(res[0].Sources, SourceDHT) {
			t.Fatalf("gossip-only result: %+v", res)
		}
	})

	t.Run("update", func(t *testing.T) {
		svcs := startAll(t, nw, WithFindTimeout(4*time.Second))
		defer closeAll(svcs)
		waitMesh(t, svcs)
		const owner = 4
		d := sample(KindData, "shard")
		v1, err := svcs[owner].Publish(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		findsOnAll(t, svcs, owner, Query{Kind: KindData, Name: "shard"}, FindOptions{UseGossip: true}, v1, 30*time.Second)
		d.Data.Samples = 7000
		v2, err := svcs[owner].Publish(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if v2.Seq <= v1.Seq || v2.Slot != v1.Slot || v2.ID == v1.ID {
			t.Fatalf("v2 seq %d slot %s id %s; v1 seq %d slot %s id %s", v2.Seq, v2.Slot, v2.ID, v1.Seq, v1.Slot, v1.ID)
		}
		findsOnAll(t, svcs, owner, Query{Kind: KindData, Name: "shard"}, FindOptions{UseGossip: true}, v2, 30*time.Second)
		waitAnnounced(t, svcs[owner], v2)

		// Replay v1 on gossip (as a hostile relay would) and into the DHT.
		if err := svcs[owner].topic.Publish(ctx, v1.Raw); err != nil {
			t.Fatal(err)
		}
		// A node that holds v2 refuses v1 outright; one that does not may
		// store it locally, but every reader below must still get v2.
		if err := nw.Peers[owner].DHT.PutValue(ctx, v1.Key(), v1.Raw); err == nil {
			t.Fatal("owner's DHT accepted v1 over v2")
		}
		_ = nw.Peers[9].DHT.PutValue(ctx, v1.Key(), v1.Raw)
		// A newer marker published after the replay must arrive everywhere
		// first: by then the replay has crossed the mesh too.
		marker, err := svcs[owner].Publish(ctx, sample(KindCompute, "marker"))
		if err != nil {
			t.Fatal(err)
		}
		findsOnAll(t, svcs, owner, Query{Kind: KindCompute}, FindOptions{UseGossip: true}, marker, 30*time.Second)
		for i, s := range svcs {
			got, err := s.Get(ctx, v1.Slot)
			if err != nil || got.Seq != v2.Seq {
				t.Fatalf("node %d: after replay of v1 has %v, %v", i, got, err)
			}
		}
		// The DHT answers v2 to every reader, including node 9 which was
		// handed v1 directly, and a DHT-only Find sees v2's sample count.
		var wg sync.WaitGroup
		for _, i := range []int{0, 5, 9, 13, 19} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := nw.Peers[i].DHT.GetValue(ctx, v1.Key())
				if err != nil {
					t.Errorf("DHT get on node %d: %v", i, err)
					return
				}
				got, err := Open(b)
				if err != nil || got.Seq != v2.Seq {
					t.Errorf("DHT on node %d returns seq %v (%v), want %d", i, got, err, v2.Seq)
				}
			}()
		}
		wg.Wait()
		findsOnAll(t, []*Service{svcs[owner], svcs[9], svcs[16]}, 0, Query{Kind: KindData, MinSamples: 6500}, FindOptions{UseDHT: true}, v2, 60*time.Second)
	})
}

// TestExpiryAndRepublish: an owner that stops republishing disappears from
// everyone's results at expiry; a live owner's republish keeps its
// descriptor alive across the first version's expiry.
func TestExpiryAndRepublish(t *testing.T) {
	nw := p2ptest.New(t, 4, p2ptest.WithPubSub())
	svcs := startAll(t, nw, WithTTL(3*time.Second), WithRepublishAt(0.4), WithSweepInterval(50*time.Millisecond))
	waitMesh(t, svcs)
	ctx := context.Background()
	live, err := svcs[1].Publish(ctx, sample(KindModel, "live"))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := svcs[2].Publish(ctx, sample(KindModel, "gone"))
	if err != nil {
		t.Fatal(err)
	}
	findsOnAll(t, svcs, 1, Query{Name: "live"}, FindOptions{UseGossip: true}, live, 10*time.Second)
	findsOnAll(t, svcs, 2, Query{Name: "gone"}, FindOptions{UseGossip: true}, gone, 10*time.Second)
	events := svcs[0].Subscribe(ctx)
	_ = svcs[2].Close() // the owner of "gone" leaves: nobody republishes it
	// A republish of gone may still be in flight, so poll: gone must leave
	// node 0's results within two lifetimes, while live stays, re-signed.
	p2ptest.Eventually(t, 10*time.Second, "gone expired, live alive past its first expiry", func() bool {
		if !time.Now().After(live.Expires) {
			return false
		}
		res, err := svcs[0].Find(ctx, Query{Kind: KindModel}, FindOptions{UseGossip: true})
		return err == nil && len(res) == 1 && res[0].Desc.Name == "live" && res[0].Desc.Seq > live.Seq
	})
	if _, err := svcs[0].Get(ctx, gone.Slot); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired descriptor still returned by Get: %v", err)
	}
	sawExpired := false
	for !sawExpired {
		select {
		case ev := <-events:
			sawExpired = ev.Type == EventExpired && ev.Desc.Name == "gone"
		case <-time.After(5 * time.Second):
			t.Fatal("no expired event for gone")
		}
	}
}

func TestDisclosureRoundTrip(t *testing.T) {
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	svcs := startAll(t, nw)
	waitMesh(t, svcs)
	ctx := context.Background()
	d := sample(KindData, "private-shard")
	sd, err := svcs[0].Publish(ctx, d, WithSealed("data.label_dist", "data.samples"))
	if err != nil {
		t.Fatal(err)
	}
	if sd.Data.LabelDist != nil || sd.Data.Samples != 0 || len(sd.Sealed) != 2 {
		t.Fatalf("sealed fields published in clear: %+v", sd.Data)
	}
	findsOnAll(t, svcs, 0, Query{Name: "private-shard"}, FindOptions{UseGossip: true}, sd, 10*time.Second)
	seen, err := svcs[1].Get(ctx, sd.Slot)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := svcs[0].Reveal(sd.Slot, "data.label_dist")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := MarshalReveal(rv)
	rv2, err := UnmarshalReveal(b)
	if err != nil {
		t.Fatal(err)
	}
	full, err := VerifyReveal(seen, rv2)
	if err != nil {
		t.Fatal(err)
	}
	if full.Data.LabelDist["0"] != 600 || seen.Data.LabelDist != nil {
		t.Fatalf("revealed %v; original left %v", full.Data.LabelDist, seen.Data.LabelDist)
	}
	// Wrong reveals.
	bad := rv2
	bad.Value = append([]byte(nil), rv2.Value...)
	bad.Value[len(bad.Value)-1] ^= 1
	if _, err := VerifyReveal(seen, bad); !errors.Is(err, ErrBadReveal) {
		t.Fatalf("tampered value: %v", err)
	}
	bad = rv2
	bad.Salt = make([]byte, 16)
	if _, err := VerifyReveal(seen, bad); !errors.Is(err, ErrBadReveal) {
		t.Fatalf("wrong salt: %v", err)
	}
	samples, _ := svcs[0].Reveal(sd.Slot, "data.samples")
	samples.Field = "data.label_dist" // a reveal of one field presented as another
	if _, err := VerifyReveal(seen, samples); !errors.Is(err, ErrBadReveal) {
		t.Fatalf("swapped field: %v", err)
	}
	if _, err := VerifyReveal(seen, Reveal{Field: "data.task"}); !errors.Is(err, ErrInvalidField) || !strings.Contains(err.Error(), "data.task") {
		t.Fatalf("unsealed field: %v", err)
	}
	if _, err := svcs[0].Reveal(sd.Slot, "data.task"); err == nil {
		t.Fatal("revealed an unsealed field")
	}
	// Sealed samples never satisfy a min-samples query.
	res, _ := svcs[1].Find(ctx, Query{Kind: KindData, MinSamples: 1}, FindOptions{UseGossip: true})
	if len(res) != 0 {
		t.Fatal("sealed sample count matched a min-samples query")
	}
}

// TestRestartRepublishes: own descriptors survive a restart on the same store
// and are announced again.
func TestRestartRepublishes(t *testing.T) {
	dir := t.TempDir()
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	priv := nw.Peers[0].Host.Peerstore().PrivKey(nw.Peers[0].Host.ID())
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	s1, err := New(context.Background(), nw.Peers[0].Host, nw.Peers[0].PubSub, nil, st, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	sd, err := s1.Publish(context.Background(), sample(KindCompute, "box"), WithSealed("compute.gpus"))
	if err != nil {
		t.Fatal(err)
	}
	_ = s1.Close()
	_ = st.Close()

	st, err = store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s2, err := New(context.Background(), nw.Peers[0].Host, nw.Peers[0].PubSub, nil, st, WithLogger(quietLogger()), WithPrivKey(priv))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	own := s2.Own()
	if len(own) != 1 || own[0].ID != sd.ID {
		t.Fatalf("after restart own = %v", own)
	}
	if _, err := s2.Reveal(sd.Slot, "compute.gpus"); err != nil {
		t.Fatalf("reveal after restart: %v", err)
	}
	// The next version continues the sequence.
	v2, err := s2.Publish(context.Background(), sample(KindCompute, "box"))
	if err != nil || v2.Seq <= sd.Seq {
		t.Fatalf("publish after restart: seq %v, %v", v2, err)
	}
	// A peer that joins later hears it: the restarted node re-announced.
	other, err := New(context.Background(), nw.Peers[1].Host, nw.Peers[1].PubSub, nil, nil, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p2ptest.Eventually(t, 10*time.Second, "mesh", func() bool { return len(s2.topic.ListPeers()) > 0 })
	v3, err := s2.Publish(context.Background(), sample(KindCompute, "box"))
	if err != nil {
		t.Fatal(err)
	}
	findsOnAll(t, []*Service{s2, other}, 0, Query{Kind: KindCompute}, FindOptions{UseGossip: true}, v3, 10*time.Second)
}

func TestWatchRepublishesOnChange(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(csvPath, []byte("x,y,label\n1,2,a\n3,4,b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nw := p2ptest.New(t, 1)
	svcs := startAll(t, nw, WithWatchInterval(20*time.Millisecond))
	s := svcs[0]
	tmpl := &Descriptor{Header: Header{Kind: KindData}, Data: &Data{Task: "toy", Modality: "tabular"}}
	sd, err := s.PublishData(context.Background(), csvPath, tmpl, facts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sd.Name != "data.csv" || sd.Data.Samples != 2 || sd.Data.LabelDist["a"] != 1 || sd.Data.Format != "csv" {
		t.Fatalf("facts: %+v", sd.Data)
	}
	f, _ := os.OpenFile(csvPath, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString("5,6,a\n")
	_ = f.Close()
	p2ptest.Eventually(t, 10*time.Second, "republish after data change", func() bool {
		o := s.Own()
		return len(o) == 1 && o[0].Seq > sd.Seq && o[0].Data.Samples == 3 && o[0].Data.LabelDist["a"] == 2
	})
	// data update republishes on demand.
	before := s.Own()[0].Seq
	up, err := s.UpdateData(context.Background(), "data.csv")
	if err != nil || up.Seq <= before {
		t.Fatalf("update: %v, %v", up, err)
	}
}

func TestPublishDataBadPath(t *testing.T) {
	nw := p2ptest.New(t, 1)
	s := startAll(t, nw)[0]
	before := len(s.Snapshot())
	unreadable := filepath.Join(t.TempDir(), "locked")
	if err := os.MkdirAll(filepath.Join(unreadable, "cat"), 0o700); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(unreadable, "cat", "1.png"), []byte("x"), 0o000)
	cases := []struct{ path, want string }{
		{"/no/such/dir", "/no/such/dir"},
		{t.TempDir(), "no idx files"},
	}
	if os.Geteuid() != 0 { // root reads anything
		cases = append(cases, struct{ path, want string }{unreadable, "permission denied"})
	}
	// A sample that cannot be read even by root: a dangling symlink.
	dangling := filepath.Join(t.TempDir(), "ds")
	_ = os.MkdirAll(filepath.Join(dangling, "cat"), 0o700)
	_ = os.Symlink("/no/such/sample.png", filepath.Join(dangling, "cat", "1.png"))
	cases = append(cases, struct{ path, want string }{dangling, "1.png"})
	for _, c := range cases {
		_, err := s.PublishData(context.Background(), c.path, &Descriptor{Data: &Data{Task: "t", Modality: "m"}}, facts.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("PublishData(%s) = %v, want error naming %q", c.path, err, c.want)
		}
	}
	if len(s.Snapshot()) != before || len(s.Own()) != 0 {
		t.Fatal("a failed publish changed the store")
	}
}

func TestFindQueryErrors(t *testing.T) {
	nw := p2ptest.New(t, 1)
	s := startAll(t, nw)[0]
	for _, c := range []struct {
		q     Query
		field string
	}{
		{Query{Kind: "weights"}, "kind"},
		{Query{MinSamples: -1}, "min_samples"},
		{Query{MaxAge: -time.Second}, "max_age"},
		{Query{Owner: "nobody"}, "owner"},
	} {
		if _, err := s.Find(context.Background(), c.q, FindOptions{}); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Fatalf("%+v: %v", c.q, err)
		}
	}
	_ = peer.ID("")
}

// TestRemove: a removed descriptor leaves our own list, cache and DHT index,
// so DHT look-ups from others stop finding it.
func TestRemove(t *testing.T) {
	nw := p2ptest.New(t, 3, p2ptest.WithValidator(RecordNamespace, RecordValidator{}))
	svcs := startAll(t, nw)
	ctx := context.Background()
	keep, err := svcs[0].Publish(ctx, sample(KindModel, "keep"))
	if err != nil {
		t.Fatal(err)
	}
	drop, err := svcs[0].Publish(ctx, sample(KindModel, "drop"))
	if err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, svcs[0], drop)
	waitAnnounced(t, svcs[0], keep)
	findsOnAll(t, svcs, 0, Query{Kind: KindModel, Name: "drop"}, FindOptions{UseDHT: true}, drop, 20*time.Second)
	events := svcs[0].Subscribe(ctx)
	if err := svcs[0].Remove(ctx, drop.Slot); err != nil {
		t.Fatal(err)
	}
	if err := svcs[0].Remove(ctx, drop.Slot); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if ev := <-events; ev.Type != EventRemoved || ev.Desc.Slot != drop.Slot {
		t.Fatalf("event %+v", ev)
	}
	if own := svcs[0].Own(); len(own) != 1 || own[0].Name != "keep" {
		t.Fatalf("own after remove: %v", own)
	}
	// A fresh seeker (empty cache) reads the re-signed index: only "keep".
	fresh, err := New(ctx, nw.Peers[2].Host, nil, nw.Peers[2].DHT, nil, WithLogger(quietLogger()), WithFindTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	_ = svcs[2].Close()
	p2ptest.Eventually(t, 20*time.Second, "index without the removed slot", func() bool {
		res, _ := fresh.Find(ctx, Query{Kind: KindModel}, FindOptions{UseDHT: true})
		fresh.mu.Lock()
		delete(fresh.cache, drop.Slot)
		fresh.mu.Unlock()
		return len(res) == 1 && res[0].Desc.Name == "keep"
	})
}
