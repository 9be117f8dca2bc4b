package overlay

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/gossip"
)

func BenchmarkOpenBeacon(b *testing.B) {
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	now := time.Now()
	raw, err := SealBeacon(key, &Beacon{Seq: 1, Issued: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli(),
		Roles: []string{"data", "compute"}, Descriptors: []string{"bafkreiabc", "bafkreidef"}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := OpenBeacon(raw, now); err != nil {
			b.Fatal(err)
		}
	}
}

// synthMap fills a real Service (one host, no peers) with n synthetic
// items: 90% datasets of one task with 1024-slot 16-bit sketches mixed from
// 64 source sets (so overlaps are real), the rest models, compute offers
// and test sets, owned by 1000 peers.
func synthMap(b *testing.B, n int) *Service {
	b.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close() })
	ps, err := pubsub.NewGossipSub(context.Background(), h, gossip.Options()...)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(context.Background(), h, ps, WithInterval(time.Minute), WithMinInterval(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	r := mrand.New(mrand.NewPCG(1, 1))
	const k = 1024
	sources := make([][]uint32, 64)
	for i := range sources {
		sources[i] = make([]uint32, k)
		for j := range sources[i] {
			sources[i][j] = math.MaxUint32
		}
		for x := 0; x < 500; x++ {
			id := uint64(i*400 + x) // neighbouring sources share 100 samples
			for j := 0; j < k; j++ {
				if v := uint32(splitmix(id*0x9e3779b97f4a7c15^uint64(j))) & 0xffff; v < sources[i][j] {
					sources[i][j] = v
				}
			}
		}
	}
	owners := make([]peer.ID, 1000)
	for i := range owners {
		_, owners[i] = newKey(b)
	}
	now := time.Now()
	// Owners beacon (applied directly: the benchmark measures the map, not
	// the network), so their items are reachable.
	for _, o := range owners {
		s.apply(&SignedBeacon{From: o, Beacon: Beacon{Seq: 1, Issued: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli(),
			Roles: []string{"data"}, Free: Capacity{Slots: 1}}}, now)
	}
	digits := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	for i := 0; i < n; i++ {
		it := &Item{ID: fmt.Sprintf("item-%05d", i), Owner: owners[i%len(owners)], Issued: now, Expires: now.Add(time.Hour)}
		switch {
		case i%10 < 9:
			it.Kind, it.Task, it.SketchAlgo, it.SketchBits = KindData, "digits-classification", "minhash-blake3-b16/v1", 16
			a, c := sources[r.IntN(64)], sources[r.IntN(64)]
			it.Sketch = make([]uint32, k)
			for j := range it.Sketch {
				it.Sketch[j] = min(a[j], c[j])
			}
			it.Samples = int64(200 + r.IntN(2000))
			it.LabelDist = map[string]int64{}
			for _, d := range r.Perm(10)[:1+r.IntN(4)] {
				it.LabelDist[digits[d]] = it.Samples / 4
			}
			it.Updated = now.Add(-time.Duration(r.IntN(72)) * time.Hour)
		case i%10 == 9 && i%20 == 9:
			it.Kind, it.Skills, it.Accuracy, it.LatencyMs = KindModel, []string{"classify-digits"}, 0.9+r.Float64()/10, 2
		case i%40 == 19:
			it.Kind, it.Task, it.Samples = KindTestset, "digits-classification", 10000
		default:
			it.Kind, it.Cores = KindCompute, 8
		}
		if err := s.AddItem(it); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkSnapshot10k: taking a fresh snapshot after a change (the copy of
// 10,000 items and 1,000 peers) and taking it again unchanged (shared).
func BenchmarkSnapshot10k(b *testing.B) {
	s := synthMap(b, 10000)
	b.Run("after-change", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s.mu.Lock()
			s.version++
			s.mu.Unlock()
			if sn := s.Snapshot(); sn == nil {
				b.Fatal("nil")
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = s.Snapshot()
		}
	})
}

// BenchmarkGroups10k: a relationship-map query over ~9,000 datasets (the
// best 200 candidates, greedy + swaps) and over a small task (exact).
func BenchmarkGroups10k(b *testing.B) {
	s := synthMap(b, 10000)
	snap := s.Snapshot()
	q := GroupQuery{Task: "digits-classification", Labels: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, MinSamples: 5000, MaxAge: 48 * time.Hour}
	if _, err := snap.Groups(q); err != nil {
		b.Fatal(err)
	}
	b.Run("heuristic-200-candidates", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := snap.Groups(q); err != nil {
				b.Fatal(err)
			}
		}
	})
	q.MaxCandidates = ExactGroupLimit
	b.Run("exact-16-candidates", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := snap.Groups(q); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("job-view", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = snap.View(Filter{Task: "digits-classification", Labels: []string{"7"}, MaxAge: 24 * time.Hour, Compute: true})
		}
	})
}
