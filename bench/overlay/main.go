// Command overlay measures the live map on loopback: for federations of 10,
// 30 and 100 nodes in one process (real libp2p hosts, TCP on 127.0.0.1, real
// GossipSub), how long until every node's map holds every node, and what
// beaconing costs one node per second, both as beacon payload and as GossipSub
// bytes on the wire (with mesh duplicates and gossip control traffic).
//
//	go run ./bench/overlay -sizes 10,30,100 -interval 2s -window 20s
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/gossip"
	"github.com/daitn/daitn/overlay"
)

type node struct {
	h   host.Host
	bw  *metrics.BandwidthCounter
	svc *overlay.Service
}

type result struct {
	n                        int
	converge                 time.Duration
	beaconBytes              float64 // mean sealed beacon size
	payloadIn, payloadOut    float64 // beacon payload bytes/s per node
	wireIn, wireOut          float64 // GossipSub protocol bytes/s per node
	probeWire                float64 // probe protocol bytes/s per node (in+out)
	beaconsPerSecondReceived float64
	lo, hi                   int // map sizes when convergence was checked last
}

func main() {
	sizes := flag.String("sizes", "10,30,100", "federation sizes")
	interval := flag.Duration("interval", 2*time.Second, "beacon interval")
	window := flag.Duration("window", 20*time.Second, "steady-state measuring window")
	degree := flag.Int("degree", 4, "connections each node opens to earlier nodes")
	flag.Parse()
	level := slog.LevelError
	if os.Getenv("OVERLAY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	var results []result
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "bad size %q\n", s)
			os.Exit(2)
		}
		r, err := run(n, *interval, *window, *degree)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "n=%d done\n", n)
	}
	fmt.Printf("beacon interval %s, steady window %s, each node dials %d earlier nodes; GOMAXPROCS cores shared by all nodes\n\n", *interval, *window, *degree)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\tconverge\tmaps\tbeacon B\tbeacons/s in\tpayload in B/s\tpayload out B/s\twire in B/s\twire out B/s\tprobe B/s\t")
	for _, r := range results {
		conv := r.converge.Round(time.Millisecond).String()
		if r.lo < r.n {
			conv = "no (" + conv + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d..%d\t%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", r.n, conv, r.lo, r.hi, r.beaconBytes,
			r.beaconsPerSecondReceived, r.payloadIn, r.payloadOut, r.wireIn, r.wireOut, r.probeWire)
	}
	_ = tw.Flush()
}

func run(n int, interval, window time.Duration, degree int) (result, error) {
	ctx := context.Background()
	nodes := make([]*node, n)
	defer func() {
		for _, nd := range nodes {
			if nd == nil {
				continue
			}
			if nd.svc != nil {
				_ = nd.svc.Close()
			}
			_ = nd.h.Close()
		}
	}()
	for i := range nodes {
		bw := metrics.NewBandwidthCounter()
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(),
			libp2p.BandwidthReporter(bw), libp2p.ResourceManager(nil))
		if err != nil {
			return result{}, err
		}
		nodes[i] = &node{h: h, bw: bw}
	}
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := 1; i < n; i++ {
		targets := map[int]bool{i - 1: true}
		for len(targets) < min(degree, i) {
			targets[r.IntN(i)] = true
		}
		for j := range targets {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := nodes[i].h.Connect(cctx, peer.AddrInfo{ID: nodes[j].h.ID(), Addrs: nodes[j].h.Addrs()})
			cancel()
			if err != nil {
				return result{}, fmt.Errorf("connect %d->%d: %w", i, j, err)
			}
		}
	}
	pss := make([]*pubsub.PubSub, n)
	for i, nd := range nodes {
		ps, err := pubsub.NewGossipSub(ctx, nd.h, gossip.Options()...)
		if err != nil {
			return result{}, err
		}
		pss[i] = ps
	}
	// Let GossipSub learn who is subscribed before the first beacons, as it
	// would in a node that has been up for a while.
	start := time.Now()
	for i, nd := range nodes {
		svc, err := overlay.New(ctx, nd.h, pss[i], overlay.WithInterval(interval), overlay.WithTTLFactor(5),
			overlay.WithMinInterval(100*time.Millisecond), overlay.WithRoles("data"), overlay.WithProbe(interval, 8))
		if err != nil {
			return result{}, err
		}
		nd.svc = svc
	}
	deadline := time.Now().Add(3 * time.Minute)
	var lo, hi int
	lastReport := time.Now()
	for {
		done := true
		lo, hi = n, 0
		for _, nd := range nodes {
			p, _ := nd.svc.Snapshot().Len()
			lo, hi = min(lo, p), max(hi, p)
			if p < n {
				done = false
			}
		}
		if done {
			break
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			fmt.Fprintf(os.Stderr, "n=%d after %s: maps hold %d..%d peers\n", n, time.Since(start).Round(time.Second), lo, hi)
			for i, nd := range nodes {
				if p, _ := nd.svc.Snapshot().Len(); p == lo {
					fmt.Fprintf(os.Stderr, "  node %d: %d conns, %d topic peers, stats %+v\n", i, len(nd.h.Network().Peers()),
						len(pss[i].ListPeers(overlay.BeaconTopic)), nd.svc.Stats())
					break
				}
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "n=%d did not converge in 3 minutes (maps hold %d..%d peers); measuring traffic anyway\n", n, lo, hi)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := result{n: n, converge: time.Since(start), lo: lo, hi: hi}
	// Steady state: skip one interval, then measure a window.
	time.Sleep(interval)
	type snap struct {
		st        overlay.Stats
		win, wout int64
		probe     int64
	}
	take := func() []snap {
		out := make([]snap, n)
		for i, nd := range nodes {
			out[i].st = nd.svc.Stats()
			for proto, s := range nd.bw.GetBandwidthByProtocol() {
				switch {
				case strings.HasPrefix(string(proto), "/meshsub/"):
					out[i].win += s.TotalIn
					out[i].wout += s.TotalOut
				case proto == overlay.ProbeProtocol:
					out[i].probe += s.TotalIn + s.TotalOut
				}
			}
		}
		return out
	}
	a := take()
	t0 := time.Now()
	time.Sleep(window)
	b := take()
	secs := time.Since(t0).Seconds() * float64(n)
	var sent, sentBytes float64
	for i := range nodes {
		res.payloadIn += float64(b[i].st.BytesReceived - a[i].st.BytesReceived)
		res.payloadOut += float64(b[i].st.BytesSent - a[i].st.BytesSent)
		res.beaconsPerSecondReceived += float64(b[i].st.BeaconsReceived - a[i].st.BeaconsReceived)
		res.wireIn += float64(b[i].win - a[i].win)
		res.wireOut += float64(b[i].wout - a[i].wout)
		res.probeWire += float64(b[i].probe - a[i].probe)
		sent += float64(b[i].st.BeaconsSent - a[i].st.BeaconsSent)
		sentBytes += float64(b[i].st.BytesSent - a[i].st.BytesSent)
	}
	if sent > 0 {
		res.beaconBytes = sentBytes / sent
	}
	res.payloadIn /= secs
	res.payloadOut /= secs
	res.beaconsPerSecondReceived /= secs
	res.wireIn /= secs
	res.wireOut /= secs
	res.probeWire /= secs
	return res, nil
}
