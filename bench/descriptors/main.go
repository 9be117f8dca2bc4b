// Command descriptors measures the descriptor control plane on loopback, all
// in one run so the numbers compare:
//
//   - bytes per descriptor on the wire (the signed envelope, per kind);
//
//   - sign and verify (Open) rate on one core;
//
//   - on N real libp2p hosts (TCP on 127.0.0.1, real GossipSub, real
//     Kademlia DHT with the /daitn prefix): publish-to-visible latency on
//     every node through gossip (p50/p99 over all node×publish pairs), and
//     DHT capability look-up latency and hops (p50/p99), both for the raw
//     FindProviders of a capability key and for the whole Find (providers ->
//     signed index -> descriptor record).
//
//     go run ./bench/descriptors -n 50 -publishes 20 -lookups 100
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/descriptors/sketch"
	"github.com/daitn/daitn/internal/gossip"
)

type peerNode struct {
	h   host.Host
	d   *dht.IpfsDHT
	ps  *pubsub.PubSub
	svc *descriptors.Service
}

func main() {
	n := flag.Int("n", 50, "number of loopback hosts")
	publishes := flag.Int("publishes", 20, "gossip publishes to time")
	lookups := flag.Int("lookups", 100, "DHT look-ups to time")
	degree := flag.Int("degree", 4, "extra connections each node opens to random earlier nodes")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))

	fmt.Printf("descriptor control plane, %d loopback hosts in one process, GOMAXPROCS=%d\n\n", *n, runtime.GOMAXPROCS(0))
	sizes()
	rates()
	nodes, err := startNet(*n, *degree)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	defer func() {
		for _, p := range nodes {
			if p.svc != nil {
				_ = p.svc.Close()
			}
			_ = p.d.Close()
			_ = p.h.Close()
		}
	}()
	if err := gossipLatency(nodes, *publishes); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	if err := dhtLatency(nodes, *lookups); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func key() crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// examples returns one realistic descriptor per kind; the data one carries a
// full-size content sketch and a 10-class label distribution.
func examples() []*descriptors.Descriptor {
	sk, _ := sketch.New(sketch.DefaultK)
	for i := 0; i < 6000; i++ {
		sk.AddHash(mrand.Uint64())
	}
	dist := map[string]int64{}
	for i := 0; i < 10; i++ {
		dist[fmt.Sprint(i)] = 600
	}
	return []*descriptors.Descriptor{
		{Header: descriptors.Header{Kind: descriptors.KindData, Name: "mnist-shard-3"}, Data: &descriptors.Data{
			Task: "digits-classification", Modality: "image", Format: "mnist-idx", Samples: 6000, SizeBytes: 4704000,
			Features:  []descriptors.Field{{Name: "image", Type: "uint8", Shape: []int{28, 28}}},
			Labels:    []descriptors.Field{{Name: "label", Type: "class", Shape: []int{10}}},
			LabelDist: dist, Sketch: descriptors.SketchOf(sk), Updated: time.Now(),
			Policy: descriptors.Policy{Mode: descriptors.PolicyTrainInPlace}, Price: &descriptors.Price{Amount: 0.1, Unit: "credit/epoch"}}},
		{Header: descriptors.Header{Kind: descriptors.KindModel, Name: "mnist-mlp"}, Model: &descriptors.Model{
			Version: "1.0", Architecture: "mlp-784-128-10", Params: 101770, SizeBytes: 407080, Task: "digits-classification",
			Modality: "image", Skills: []string{"classify-digits"}, ClaimedAccuracy: 0.97, LatencyMs: 0.4}},
		{Header: descriptors.Header{Kind: descriptors.KindCompute, Name: "box"}, Compute: &descriptors.Compute{
			CPUCores: 8, MemoryBytes: 16 << 30, Roles: []string{"compute", "host"}, FreeCPU: 0.5, FreeMemory: 0.7, Availability: "always"}},
		{Header: descriptors.Header{Kind: descriptors.KindTestset, Name: "t10k"}, Testset: &descriptors.Testset{
			Task: "digits-classification", Samples: 10000, Metrics: []string{"accuracy"}, LabelDist: dist}},
	}
}

func sizes() {
	priv := key()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tenvelope bytes\tof which sketch\t")
	for _, d := range examples() {
		s, err := descriptors.Sign(priv, d)
		if err != nil {
			panic(err)
		}
		sk := 0
		if d.Data != nil && d.Data.Sketch != nil {
			sk = len(d.Data.Sketch.Mins)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", d.Kind, len(s.Raw), sk)
	}
	_ = tw.Flush()
	fmt.Println()
}

func rates() {
	priv := key()
	d := examples()[0]
	const dur = time.Second
	var last *descriptors.Signed
	start := time.Now()
	signs := 0
	for time.Since(start) < dur {
		s, err := descriptors.Sign(priv, d)
		if err != nil {
			panic(err)
		}
		last = s
		signs++
	}
	signRate := float64(signs) / time.Since(start).Seconds()
	start = time.Now()
	opens := 0
	for time.Since(start) < dur {
		if _, err := descriptors.Open(last.Raw); err != nil {
			panic(err)
		}
		opens++
	}
	openRate := float64(opens) / time.Since(start).Seconds()
	fmt.Printf("one core, data descriptor (%d B): sign %.0f/s, verify (Open: signature + decode + validate) %.0f/s\n\n", len(last.Raw), signRate, openRate)
}

func startNet(n, degree int) ([]*peerNode, error) {
	var nodes []*peerNode
	for i := 0; i < n; i++ {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			return nodes, err
		}
		d, err := dht.New(h,
			dht.ProtocolPrefix("/daitn"), dht.Mode(dht.ModeServer),
			dht.Datastore(dssync.MutexWrap(ds.NewMapDatastore())),
			dht.NamespacedValidator(descriptors.RecordNamespace, descriptors.RecordValidator{}),
			dht.DisableAutoRefresh())
		if err != nil {
			return nodes, err
		}
		ps, err := pubsub.NewGossipSub(context.Background(), h, gossip.Options()...)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, &peerNode{h: h, d: d, ps: ps})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 1; i < n; i++ {
		targets := map[int]bool{0: true}
		for len(targets) < min(degree+1, i) {
			targets[mrand.IntN(i)] = true
		}
		for j := range targets {
			if err := nodes[i].h.Connect(ctx, peer.AddrInfo{ID: nodes[j].h.ID(), Addrs: nodes[j].h.Addrs()}); err != nil {
				return nodes, err
			}
		}
	}
	var wg sync.WaitGroup
	for _, p := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); <-p.d.ForceRefresh() }()
	}
	wg.Wait()
	return nodes, nil
}

func startServices(nodes []*peerNode, opts ...descriptors.Option) error {
	for _, p := range nodes {
		if p.svc != nil {
			_ = p.svc.Close()
		}
		svc, err := descriptors.New(context.Background(), p.h, p.ps, p.d, nil, opts...)
		if err != nil {
			return err
		}
		p.svc = svc
	}
	return nil
}

func pct(v []time.Duration, p float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	i := int(p * float64(len(v)-1))
	return v[i]
}

func pctInt(v []int, p float64) int {
	if len(v) == 0 {
		return 0
	}
	sort.Ints(v)
	return v[int(p*float64(len(v)-1))]
}

// gossipLatency: a random node publishes a new descriptor; every other node's
// service reports it (its Subscribe channel); latency = delivery - publish.
func gossipLatency(nodes []*peerNode, publishes int) error {
	if err := startServices(nodes, descriptors.WithDHT(false)); err != nil {
		return err
	}
	// Wait for every node to have topic peers.
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range nodes {
		for len(p.ps.ListPeers(descriptors.Topic)) == 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("gossip mesh did not form")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // let meshes settle past the first heartbeats
	type key struct {
		slot string
		seq  uint64
	}
	var mu sync.Mutex
	arrived := map[key][]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, p := range nodes {
		ch := p.svc.Subscribe(ctx)
		go func() {
			for ev := range ch {
				if ev.Type == descriptors.EventAdded || ev.Type == descriptors.EventUpdated {
					// Visible by gossip, or by a neighbour's catch-up sync
					// that happened to run first.
					if ev.Source != descriptors.SourceGossip && ev.Source != descriptors.SourceSync {
						continue
					}
					now := time.Now()
					mu.Lock()
					k := key{ev.Desc.Slot.String(), ev.Desc.Seq}
					arrived[k] = append(arrived[k], now)
					mu.Unlock()
				}
			}
		}()
	}
	var lat []time.Duration
	missing := 0
	ex := examples()
	for i := 0; i < publishes; i++ {
		owner := nodes[mrand.IntN(len(nodes))]
		d := *ex[i%len(ex)]
		d.Name = fmt.Sprintf("%s-%d", d.Name, i)
		start := time.Now()
		s, err := owner.svc.Publish(context.Background(), &d)
		if err != nil {
			return err
		}
		k := key{s.Slot.String(), s.Seq}
		wait := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := len(arrived[k])
			mu.Unlock()
			if got >= len(nodes)-1 || time.Now().After(wait) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		for _, t := range arrived[k] {
			lat = append(lat, t.Sub(start))
		}
		missing += len(nodes) - 1 - len(arrived[k])
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("gossip publish -> visible on every other node (%d publishes x %d nodes = %d deliveries, %d missing after 10s)\n",
		publishes, len(nodes)-1, len(lat), missing)
	fmt.Printf("  p50 %v  p99 %v  max %v\n\n", pct(lat, 0.5).Round(time.Microsecond), pct(lat, 0.99).Round(time.Microsecond), pct(lat, 1).Round(time.Microsecond))
	return nil
}

// dhtLatency: gossip off everywhere; a few owners publish; random seekers
// look the capability up. Hops: the Kademlia query depth at which the first
// provider record came back (peers from the seeker's routing table are
// depth 1, peers they returned depth 2, ...).
func dhtLatency(nodes []*peerNode, lookups int) error {
	if err := startServices(nodes, descriptors.WithGossip(false)); err != nil {
		return err
	}
	ex := examples()
	owners := []int{}
	var owned []*descriptors.Signed
	for i := 0; i < 4; i++ {
		o := mrand.IntN(len(nodes))
		d := *ex[i]
		s, err := nodes[o].svc.Publish(context.Background(), &d)
		if err != nil {
			return err
		}
		owners = append(owners, o)
		owned = append(owned, s)
	}
	// Wait until each owner's records are in the DHT: its own Find sees them.
	time.Sleep(500 * time.Millisecond)
	for i, s := range owned {
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var found int
			for range nodes[(owners[i]+1)%len(nodes)].d.FindProvidersAsync(ctx, descriptors.CapabilityKey(s.Tags()[len(s.Tags())-1]), 1) {
				found++
			}
			cancel()
			if found > 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s never announced", s.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	queries := []descriptors.Query{
		{Kind: descriptors.KindData, Task: "digits-classification"},
		{Kind: descriptors.KindModel, Skill: "classify-digits"},
		{Kind: descriptors.KindCompute, Role: "host"},
		{Kind: descriptors.KindTestset, Task: "digits-classification"},
	}
	tags := []string{"data/task=digits-classification", "model/skill=classify-digits", "role=host", "testset/task=digits-classification"}
	var provLat, findLat []time.Duration
	var hops []int
	fails := 0
	for i := 0; i < lookups; i++ {
		qi := i % len(queries)
		seeker := nodes[mrand.IntN(len(nodes))]
		if seeker == nodes[owners[qi]] {
			seeker = nodes[(owners[qi]+1)%len(nodes)]
		}
		// Raw capability look-up with hop accounting.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		qctx, events := routing.RegisterForQueryEvents(ctx)
		depth := map[peer.ID]int{}
		var dmu sync.Mutex
		maxDepth := 0
		go func() {
			for ev := range events {
				dmu.Lock()
				switch ev.Type {
				case routing.SendingQuery:
					if _, ok := depth[ev.ID]; !ok {
						depth[ev.ID] = 1
					}
					if depth[ev.ID] > maxDepth {
						maxDepth = depth[ev.ID]
					}
				case routing.PeerResponse:
					d := depth[ev.ID]
					if d == 0 {
						d = 1
					}
					for _, r := range ev.Responses {
						if _, ok := depth[r.ID]; !ok {
							depth[r.ID] = d + 1
						}
					}
				}
				dmu.Unlock()
			}
		}()
		start := time.Now()
		var first time.Duration
		got := false
		h := 0
		for range seeker.d.FindProvidersAsync(qctx, descriptors.CapabilityKey(tags[qi]), 1) {
			if !got {
				first = time.Since(start)
				got = true
				// Depth of the deepest peer asked before the provider came
				// back; 0 = the seeker held the provider record itself.
				dmu.Lock()
				h = maxDepth
				dmu.Unlock()
			}
		}
		cancel()
		if !got {
			fails++
			continue
		}
		provLat = append(provLat, first)
		hops = append(hops, h)
		// Whole Find through the DHT only (fresh result each time: the
		// seeker's cache may hold the record, then only the index is read).
		start = time.Now()
		res, _ := seeker.svc.Find(context.Background(), queries[qi], descriptors.FindOptions{UseDHT: true, Limit: 1})
		if len(res) == 0 {
			fails++
			continue
		}
		findLat = append(findLat, time.Since(start))
	}
	fmt.Printf("DHT capability look-up, gossip off (%d look-ups from random nodes, %d failed)\n", lookups, fails)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50\tp99\tmax\t")
	fmt.Fprintf(tw, "FindProviders (first provider)\t%v\t%v\t%v\t\n", pct(provLat, .5).Round(time.Microsecond), pct(provLat, .99).Round(time.Microsecond), pct(provLat, 1).Round(time.Microsecond))
	fmt.Fprintf(tw, "hops (query depth; 0 = held locally)\t%d\t%d\t%d\t\n", pctInt(hops, .5), pctInt(hops, .99), pctInt(hops, 1))
	fmt.Fprintf(tw, "Find (providers+index+record)\t%v\t%v\t%v\t\n", pct(findLat, .5).Round(time.Microsecond), pct(findLat, .99).Round(time.Microsecond), pct(findLat, 1).Round(time.Microsecond))
	_ = tw.Flush()
	return nil
}
