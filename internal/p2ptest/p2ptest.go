// Package p2ptest starts real libp2p hosts on 127.0.0.1 for the tests of
// services that take a host.Host, a *pubsub.PubSub or a routing.Routing
// rather than a whole node. Everything is real: TCP sockets, Noise, yamux,
// the Kademlia DHT (protocol prefix /daitn) and GossipSub with daitn's score
// parameters. Tests that need the whole node use node/nodetest instead.
package p2ptest

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/gossip"
)

// Peer is one started host with its optional DHT and PubSub.
type Peer struct {
	Host       host.Host
	DHT        *dht.IpfsDHT   // nil unless WithDHT
	PubSub     *pubsub.PubSub // nil unless WithPubSub
	Store      ds.Batching    // in-memory store the DHT uses
	scores     *scoreBook
	stopPubSub context.CancelFunc
}

// Net is a set of started peers, closed by t.Cleanup.
type Net struct {
	Peers []*Peer
}

type config struct {
	dht        bool
	pubsub     bool
	validators map[string]record.Validator
	quic       bool
}

// Option configures New.
type Option func(*config)

// WithDHT gives every peer a server-mode DHT with the /daitn prefix.
func WithDHT() Option { return func(c *config) { c.dht = true } }

// WithPubSub gives every peer a GossipSub router with daitn's options.
func WithPubSub() Option { return func(c *config) { c.pubsub = true } }

// WithValidator adds a namespaced DHT record validator (implies WithDHT).
func WithValidator(ns string, v record.Validator) Option {
	return func(c *config) {
		c.dht = true
		if c.validators == nil {
			c.validators = map[string]record.Validator{}
		}
		c.validators[ns] = v
	}
}

// WithQUIC listens on QUIC as well as TCP.
func WithQUIC() Option { return func(c *config) { c.quic = true } }

// New starts n hosts on 127.0.0.1 with random ports and connects every host
// to host 0 (a star) and to its successor (a ring), so GossipSub meshes form
// even when host 0 prunes some leaves (a pure star leaves pruned leaves with
// no mesh peer, since new peers' scores are below the PX threshold). With a
// DHT every peer then refreshes its routing table, all in parallel.
func New(t testing.TB, n int, opts ...Option) *Net {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	nw := &Net{}
	for i := 0; i < n; i++ {
		nw.Peers = append(nw.Peers, newPeer(t, &cfg))
	}
	for i := 1; i < n; i++ {
		Connect(t, nw.Peers[i].Host, nw.Peers[0].Host)
		if i+1 < n {
			Connect(t, nw.Peers[i].Host, nw.Peers[i+1].Host)
		}
	}
	if cfg.dht {
		var wg sync.WaitGroup
		for _, p := range nw.Peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-p.DHT.ForceRefresh()
			}()
		}
		wg.Wait()
	}
	return nw
}

func newPeer(t testing.TB, cfg *config) *Peer {
	t.Helper()
	listen := []string{"/ip4/127.0.0.1/tcp/0"}
	if cfg.quic {
		listen = append(listen, "/ip4/127.0.0.1/udp/0/quic-v1")
	}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings(listen...),
		libp2p.DisableRelay(),
		libp2p.ResourceManager(nil),
	)
	if err != nil {
		t.Fatalf("p2ptest: new host: %v", err)
	}
	p := &Peer{Host: h, Store: dssync.MutexWrap(ds.NewMapDatastore())}
	if cfg.dht {
		dopts := []dht.Option{
			dht.ProtocolPrefix("/daitn"),
			dht.Mode(dht.ModeServer),
			dht.Datastore(p.Store),
			dht.DisableAutoRefresh(),
		}
		for ns, v := range cfg.validators {
			dopts = append(dopts, dht.NamespacedValidator(ns, v))
		}
		d, err := dht.New(h, dopts...)
		if err != nil {
			_ = h.Close()
			t.Fatalf("p2ptest: new dht: %v", err)
		}
		p.DHT = d
	}
	if cfg.pubsub {
		p.scores = &scoreBook{m: map[peer.ID]float64{}}
		popts := append(gossip.Options(),
			pubsub.WithPeerScoreInspect(p.scores.update, 100*time.Millisecond))
		// PubSub stops with its context, not a Close: cancelled at cleanup
		// so its goroutines (and their event-bus subscriptions) end first.
		psCtx, cancel := context.WithCancel(context.Background())
		p.stopPubSub = cancel
		ps, err := pubsub.NewGossipSub(psCtx, h, popts...)
		if err != nil {
			cancel()
			_ = h.Close()
			t.Fatalf("p2ptest: new gossipsub: %v", err)
		}
		p.PubSub = ps
	}
	t.Cleanup(func() {
		if p.stopPubSub != nil {
			p.stopPubSub()
		}
		if p.DHT != nil {
			_ = p.DHT.Close()
		}
		// go-libp2p v0.51's host Close can hang for good: AutoNAT's Close
		// waits on an event-bus lock held by an emitter blocked on another
		// subscriber's full channel (seen once in ~10 CI runs, in cleanup).
		// Bound it so one stuck cleanup cannot eat the whole test timeout;
		// the leaked goroutines die with the test binary.
		done := make(chan struct{})
		go func() { _ = h.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Logf("p2ptest: host %s did not close within 20s (libp2p event-bus stall); leaving it", h.ID())
		}
	})
	return p
}

// Connect dials b from a and fails the test on error.
func Connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatalf("p2ptest: connect %s -> %s: %v", a.ID(), b.ID(), err)
	}
}

// Score returns the GossipSub score that p gives to other, or NaN if p has
// no score for it yet. The book is refreshed every 100ms.
func (p *Peer) Score(other peer.ID) float64 {
	if p.scores == nil {
		return math.NaN()
	}
	return p.scores.get(other)
}

type scoreBook struct {
	mu sync.Mutex
	m  map[peer.ID]float64
}

func (s *scoreBook) update(m map[peer.ID]float64) {
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

func (s *scoreBook) get(p peer.ID) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[p]
	if !ok {
		return math.NaN()
	}
	return v
}

// Eventually polls cond every 20ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}
