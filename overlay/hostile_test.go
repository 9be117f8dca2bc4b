package overlay

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/p2ptest"
)

// TestHostileBeacons runs hand-written hostile peers that join the beacon
// topic without a validator and publish forged, oversized, impossible and
// flooding beacons, one attacker per kind of attack. The honest node must
// reject each, keep them out of its map and lower that attacker's gossip
// score (after a few rejects GossipSub graylists it and drops the rest
// unread, which is the point).
func TestHostileBeacons(t *testing.T) {
	cases := []struct {
		name string
		msgs func(t *testing.T, attKey crypto.PrivKey, target peer.ID) [][]byte
	}{
		{"forged signer", func(t *testing.T, _ crypto.PrivKey, target peer.ID) [][]byte {
			otherKey, _ := newKey(t)
			raw, _ := SealBeacon(otherKey, ptr(goodBeacon(time.Now(), target)))
			return [][]byte{raw}
		}},
		{"oversized", func(t *testing.T, _ crypto.PrivKey, _ peer.ID) [][]byte {
			big := make([]byte, 20<<10)
			_, _ = rand.Read(big)
			return [][]byte{big}
		}},
		{"negative load", func(t *testing.T, k crypto.PrivKey, target peer.ID) [][]byte {
			return [][]byte{sealWith(t, k, target, func(b *Beacon) { b.Load.Queue = -4 })}
		}},
		{"rtt of hours", func(t *testing.T, k crypto.PrivKey, target peer.ID) [][]byte {
			return [][]byte{sealWith(t, k, target, func(b *Beacon) { b.RTTs[0].Micros = (5 * time.Hour).Microseconds() })}
		}},
		{"future timestamp", func(t *testing.T, k crypto.PrivKey, target peer.ID) [][]byte {
			return [][]byte{sealWith(t, k, target, func(b *Beacon) {
				b.Issued = time.Now().Add(time.Hour).UnixMilli()
				b.Expires = time.Now().Add(time.Hour + time.Minute).UnixMilli()
			})}
		}},
		{"flood", func(t *testing.T, k crypto.PrivKey, target peer.ID) [][]byte {
			// Valid beacons issued 1ms apart: validation runs concurrently,
			// so one may be accepted; the rest are too close in issued time
			// or beyond the per-sender token bucket.
			var out [][]byte
			base := time.Now()
			for i := 0; i < 20; i++ {
				out = append(out, sealWith(t, k, target, func(b *Beacon) {
					b.Seq = uint64(100 + i)
					b.Issued = base.Add(time.Duration(i) * time.Millisecond).UnixMilli()
				}))
			}
			return out
		}},
		{"stale flood", func(t *testing.T, k crypto.PrivKey, target peer.ID) [][]byte {
			// Ever older issued times: each alone is merely stale, a stream
			// of them is a flood.
			var out [][]byte
			base := time.Now()
			for i := 0; i < 3*maxStalePerWindow; i++ {
				out = append(out, sealWith(t, k, target, func(b *Beacon) {
					b.Seq = uint64(1000 - i)
					b.Issued = base.Add(-time.Duration(i) * time.Second).UnixMilli()
				}))
			}
			return out
		}},
	}
	nw := p2ptest.New(t, 1+len(cases), p2ptest.WithPubSub())
	honest := newSvc(t, nw.Peers[0].Host, nw.Peers[0].PubSub, testOpts()...)
	ctx := context.Background()
	for i, c := range cases {
		att := nw.Peers[1+i]
		t.Run(c.name, func(t *testing.T) {
			topic, err := att.PubSub.Join(BeaconTopic)
			if err != nil {
				t.Fatal(err)
			}
			p2ptest.Eventually(t, 30*time.Second, "attacker sees the honest peer on the topic", func() bool {
				return len(topic.ListPeers()) >= 1
			})
			before := honest.Stats().Rejected
			msgs := c.msgs(t, att.Host.Peerstore().PrivKey(att.Host.ID()), nw.Peers[0].Host.ID())
			for _, m := range msgs {
				if err := topic.Publish(ctx, m); err != nil {
					t.Fatalf("attacker publish: %v", err)
				}
			}
			p2ptest.Eventually(t, 30*time.Second, "reject and a negative score for the attacker", func() bool {
				return honest.Stats().Rejected > before && nw.Peers[0].Score(att.Host.ID()) < 0
			})
			if p := honest.Snapshot().Peer(att.Host.ID()); p != nil && (!strings.Contains(c.name, "flood") || p.Seq < 100) {
				t.Fatalf("attacker in the map from beacon seq %d", p.Seq)
			}
			t.Logf("rejected %d, attacker score %.1f", honest.Stats().Rejected-before, nw.Peers[0].Score(att.Host.ID()))
		})
	}
	if n, _ := honest.Snapshot().Len(); n > 3 {
		t.Fatalf("honest map has %d peers; at most itself and the first beacon of each flood expected", n)
	}
}

func sealWith(t *testing.T, k crypto.PrivKey, target peer.ID, mut func(b *Beacon)) []byte {
	t.Helper()
	b := goodBeacon(time.Now(), target)
	mut(&b)
	raw, err := SealBeacon(k, &b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func ptr[T any](v T) *T { return &v }

// TestLatencyEdgesOrderPeers injects a per-node answer delay in the probe
// handler (node i answers i*40ms late) and checks that the map's RTTs order
// the peers accordingly, both as measured by self and as reported by
// others' beacons.
func TestLatencyEdgesOrderPeers(t *testing.T) {
	const n = 5
	nw := p2ptest.New(t, n, p2ptest.WithPubSub())
	for i := 1; i < n; i++ {
		for j := i + 1; j < n; j++ {
			p2ptest.Connect(t, nw.Peers[i].Host, nw.Peers[j].Host)
		}
	}
	interval := 300 * time.Millisecond
	if raceBuild {
		interval = time.Second
	}
	svcs := make([]*Service, n)
	for i, p := range nw.Peers {
		d := time.Duration(i) * 40 * time.Millisecond
		svcs[i] = newSvc(t, p.Host, p.PubSub, WithInterval(interval), WithTTLFactor(5),
			WithMinInterval(50*time.Millisecond), WithProbe(interval/2, n),
			WithProbeDelay(func(_ peer.ID) time.Duration { return d }))
	}
	id := func(i int) peer.ID { return nw.Peers[i].Host.ID() }
	var snap *Snapshot
	p2ptest.Eventually(t, 60*time.Second, "RTTs ordered by injected delay", func() bool {
		snap = svcs[0].Snapshot()
		prev := time.Duration(0)
		for i := 1; i < n; i++ {
			d, ok := snap.RTT(id(0), id(i))
			if !ok || d <= prev {
				return false
			}
			prev = d
		}
		// Peer 1's beacon reports its own RTTs: 2 is nearer to it than 4.
		d12, ok1 := snap.RTT(id(1), id(2))
		d14, ok2 := snap.RTT(id(1), id(4))
		return ok1 && ok2 && d12 < d14
	})
	for i := 1; i < n; i++ {
		d, _ := snap.RTT(id(0), id(i))
		t.Logf("rtt 0->%d = %v", i, d)
	}
}
