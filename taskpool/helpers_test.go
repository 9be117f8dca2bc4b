package taskpool

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/gossip"
	"github.com/daitn/daitn/internal/p2ptest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testOpts are fast settings for tests: short ticks, retries and windows.
func testOpts(extra ...Option) []Option {
	return append([]Option{
		WithLogger(quiet),
		WithTick(20 * time.Millisecond),
		WithRetryInterval(50 * time.Millisecond),
		WithCallTimeout(5 * time.Second),
		WithDefaults(2*time.Second, 50*time.Millisecond, time.Minute),
	}, extra...)
}

func memStore() ds.Batching { return dssync.MutexWrap(ds.NewMapDatastore()) }

func newSvc(t testing.TB, p *p2ptest.Peer, store ds.Batching, opts ...Option) *Service {
	t.Helper()
	s, err := New(context.Background(), p.Host, p.PubSub, store, testOpts(opts...)...)
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// services starts n peers; peer 0 is the hub every other peer is connected
// to, which is where tests put the poster.
func services(t testing.TB, n int, opts ...Option) (*p2ptest.Net, []*Service) {
	t.Helper()
	nw := p2ptest.New(t, n, p2ptest.WithPubSub())
	var ss []*Service
	for _, p := range nw.Peers {
		ss = append(ss, newSvc(t, p, memStore(), opts...))
	}
	return nw, ss
}

// waitTopicPeers waits until s sees want peers on the pool's topic, so a
// posting published now reaches them.
func waitTopicPeers(t testing.TB, s *Service, pool string, want int) {
	t.Helper()
	if err := s.JoinPool(pool); err != nil {
		t.Fatal(err)
	}
	p2ptest.Eventually(t, 10*time.Second, fmt.Sprintf("%d peers on pool %s", want, pool), func() bool {
		return len(s.ps.ListPeers(TopicName(pool))) >= want
	})
}

// runLog records which agent ran which task, how often.
type runLog struct {
	mu   sync.Mutex
	runs map[string][]peer.ID
}

func newRunLog() *runLog { return &runLog{runs: map[string][]peer.ID{}} }

func (l *runLog) add(id string, p peer.ID) {
	l.mu.Lock()
	l.runs[id] = append(l.runs[id], p)
	l.mu.Unlock()
}

func (l *runLog) get(id string) []peer.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]peer.ID(nil), l.runs[id]...)
}

// keyedHost is a host with a fixed key and optional fixed address, for
// restart tests.
func keyedHost(t testing.TB, key crypto.PrivKey, addr string) (host.Host, *pubsub.PubSub) {
	t.Helper()
	if addr == "" {
		addr = "/ip4/127.0.0.1/tcp/0"
	}
	var h host.Host
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err = libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings(addr),
			libp2p.DisableRelay(), libp2p.ResourceManager(nil))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the old listener is still closing
	}
	if err != nil {
		t.Fatalf("new host on %s: %v", addr, err)
	}
	ps, err := pubsub.NewGossipSub(context.Background(), h, gossip.Options()...)
	if err != nil {
		t.Fatalf("gossipsub: %v", err)
	}
	return h, ps
}

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
