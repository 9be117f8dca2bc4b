package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

const sketchK = 256

// sketchOf builds a MinHash sketch of a set of sample ids the way the
// descriptor facts do: K seeded hashes, minimum per seed.
func sketchOf(samples []uint64) []uint32 {
	s := make([]uint32, sketchK)
	for i := range s {
		s[i] = math.MaxUint32
	}
	for _, x := range samples {
		for i := 0; i < sketchK; i++ {
			v := uint32(splitmix(x*0x9e3779b97f4a7c15^uint64(i)) >> 32)
			if v < s[i] {
				s[i] = v
			}
		}
	}
	return s
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// synthetic dataset: sample ids [lo, hi) with the given labels spread evenly.
func synthData(id string, owner peer.ID, lo, hi uint64, labels []string, now time.Time) *Item {
	var ids []uint64
	for x := lo; x < hi; x++ {
		ids = append(ids, x)
	}
	dist := map[string]int64{}
	for i := range ids {
		dist[labels[i%len(labels)]]++
	}
	return &Item{ID: id, Kind: KindData, Owner: owner, Task: "digits-classification", Samples: int64(len(ids)),
		LabelDist: dist, Sketch: sketchOf(ids), SketchAlgo: "test", Issued: now, Expires: now.Add(time.Hour), Updated: now}
}

func testPeers(n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = peer.ID(fmt.Sprintf("peer-%02d", i))
	}
	return out
}

func snapOf(t testing.TB, self peer.ID, now time.Time, owners []peer.ID, items []*Item) *Snapshot {
	var peers []*PeerInfo
	for _, o := range owners {
		peers = append(peers, &PeerInfo{ID: o, Issued: now, Expires: now.Add(time.Minute), Self: o == self})
	}
	s, errs := NewSnapshot(self, now, peers, items, nil)
	if len(errs) > 0 {
		t.Fatalf("snapshot: %v", errs)
	}
	return s
}

func TestJaccardEstimate(t *testing.T) {
	now := time.Now()
	a := synthData("a", "p", 0, 1000, []string{"0"}, now)
	b := synthData("b", "p", 500, 1500, []string{"0"}, now) // true J = 500/1500
	j, ok := Jaccard(a, b)
	if !ok || math.Abs(j-1.0/3) > 0.08 {
		t.Fatalf("J = %v ok=%v, want about 0.333", j, ok)
	}
	inter := Intersection(a, b)
	if math.Abs(inter-500) > 100 {
		t.Fatalf("intersection = %v, want about 500", inter)
	}
	c := synthData("c", "p", 5000, 6000, []string{"0"}, now)
	if j, _ := Jaccard(a, c); j > 0.05 {
		t.Fatalf("disjoint J = %v", j)
	}
	c.SketchAlgo = "other"
	if _, ok := Jaccard(a, c); ok {
		t.Fatal("sketches of different algorithms compared")
	}
}

// bruteGroups is an independent exhaustive search: every subset, keep the
// feasible minimal ones, order by overlap, size, unique samples.
func bruteGroups(s *Snapshot, q GroupQuery) []Group {
	var cands []*Item
	for _, it := range s.Items(KindData) {
		if it.Task != q.Task || !s.Reachable(it) || (q.MaxAge > 0 && s.ItemAge(it) > q.MaxAge) {
			continue
		}
		cands = append(cands, it)
	}
	useful := func(it *Item) int64 {
		if len(q.Labels) == 0 {
			return it.Samples
		}
		var n int64
		for _, l := range q.Labels {
			n += it.LabelDist[l]
		}
		return n
	}
	n := len(cands)
	inter := make([][]float64, n)
	use := make([]int64, n)
	labels := make([]map[string]bool, n)
	for i, a := range cands {
		inter[i] = make([]float64, n)
		for j, b := range cands {
			inter[i][j] = Intersection(a, b)
		}
		use[i] = useful(a)
		labels[i] = map[string]bool{}
		for l, c := range a.LabelDist {
			if c > 0 {
				labels[i][l] = true
			}
		}
	}
	feasible := func(m int) (bool, float64, int64) {
		var sum int64
		ov := 0.0
		for i := 0; i < n; i++ {
			if m&(1<<i) == 0 {
				continue
			}
			sum += use[i]
			for j := 0; j < i; j++ {
				if m&(1<<j) != 0 {
					ov += inter[i][j]
				}
			}
		}
		for _, l := range q.Labels {
			found := false
			for i := 0; i < n && !found; i++ {
				found = m&(1<<i) != 0 && labels[i][l]
			}
			if !found {
				return false, ov, sum
			}
		}
		return float64(sum)-ov >= float64(q.MinSamples), ov, sum
	}
	var out []Group
	for m := 1; m < 1<<n; m++ {
		ok, ov, sum := feasible(m)
		if !ok {
			continue
		}
		minimal := true
		for i := 0; i < n && minimal; i++ {
			if m&(1<<i) != 0 && m != 1<<i {
				if ok, _, _ := feasible(m &^ (1 << i)); ok {
					minimal = false
				}
			}
		}
		if !minimal {
			continue
		}
		g := Group{Overlap: ov, Samples: sum, Unique: float64(sum) - ov}
		for i := 0; i < n; i++ {
			if m&(1<<i) != 0 {
				g.Datasets = append(g.Datasets, cands[i].ID)
			}
		}
		sort.Strings(g.Datasets)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if math.Abs(out[i].Overlap-out[j].Overlap) > 1e-9 {
			return out[i].Overlap < out[j].Overlap
		}
		if len(out[i].Datasets) != len(out[j].Datasets) {
			return len(out[i].Datasets) < len(out[j].Datasets)
		}
		return out[i].Unique > out[j].Unique
	})
	return out
}

// randomWorld makes n datasets over overlapping id ranges and random label
// subsets: some near-duplicates, some disjoint, some partial overlaps.
func randomWorld(t testing.TB, r *rand.Rand, n int, now time.Time) (*Snapshot, []peer.ID) {
	owners := testPeers(n)
	var items []*Item
	digits := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	for i := 0; i < n; i++ {
		lo := uint64(r.IntN(8)) * 250
		size := uint64(200 + r.IntN(800))
		k := 2 + r.IntN(6)
		perm := r.Perm(10)
		var labels []string
		for _, p := range perm[:k] {
			labels = append(labels, digits[p])
		}
		items = append(items, synthData(fmt.Sprintf("d%02d", i), owners[i], lo, lo+size, labels, now))
	}
	return snapOf(t, owners[0], now, owners, items), owners
}

func TestGroupsExactMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	for trial := 0; trial < 25; trial++ {
		n := 6 + r.IntN(7)
		s, _ := randomWorld(t, r, n, now)
		q := GroupQuery{Task: "digits-classification", Labels: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
			MinSamples: int64(500 + r.IntN(1500)), Limit: 3}
		want := bruteGroups(s, q)
		got, err := s.Groups(q)
		if len(want) == 0 {
			if err == nil {
				t.Fatalf("trial %d: brute force finds nothing, Groups found %v", trial, got)
			}
			continue
		}
		if err != nil {
			t.Fatalf("trial %d: %v (brute force found %v)", trial, err, want[0])
		}
		if !got[0].Exact {
			t.Fatalf("trial %d: %d candidates not searched exactly", trial, n)
		}
		if math.Abs(got[0].Overlap-round3(want[0].Overlap)) > 1e-6 {
			t.Fatalf("trial %d: best overlap %v (%v), brute force %v (%v)", trial, got[0].Overlap, got[0].Datasets, want[0].Overlap, want[0].Datasets)
		}
	}
}

func TestGroupsHeuristicNearBruteForce(t *testing.T) {
	// Force the heuristic on small worlds (by asking for more candidates
	// than the exact limit only through a larger world) and compare with
	// brute force on a random subset that fits.
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	worse := 0
	trials := 8
	if raceBuild {
		trials = 4 // each trial's brute force is 2^17 subsets
	}
	for trial := 0; trial < trials; trial++ {
		n := ExactGroupLimit + 1 // just above the exact limit: brute force is still cheap
		s, _ := randomWorld(t, r, n, now)
		q := GroupQuery{Task: "digits-classification", Labels: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
			MinSamples: int64(500 + r.IntN(1000)), Limit: 3}
		want := bruteGroups(s, q)
		got, err := s.Groups(q)
		if len(want) == 0 {
			continue
		}
		if err != nil {
			t.Fatalf("trial %d: heuristic found nothing, brute force %v", trial, want[0])
		}
		if got[0].Exact {
			t.Fatal("expected the heuristic path")
		}
		// Every answer must be feasible.
		if got[0].Unique < float64(q.MinSamples) || len(got[0].Labels) < 10 {
			t.Fatalf("trial %d: infeasible group %+v", trial, got[0])
		}
		if got[0].Overlap > round3(want[0].Overlap)+1e-6 {
			worse++
			t.Logf("trial %d: heuristic overlap %.1f vs optimum %.1f", trial, got[0].Overlap, want[0].Overlap)
		}
	}
	if worse > trials/4 {
		t.Fatalf("heuristic missed the optimum in %d of %d trials", worse, trials)
	}
}

func TestGroupsKnownOverlaps(t *testing.T) {
	now := time.Now()
	owners := testPeers(6)
	evens := []string{"0", "2", "4", "6", "8"}
	odds := []string{"1", "3", "5", "7", "9"}
	items := []*Item{
		synthData("evens-a", owners[0], 0, 3000, evens, now),
		synthData("evens-a-copy", owners[1], 0, 3000, evens, now), // same samples
		synthData("odds-b", owners[2], 10000, 13000, odds, now),
		synthData("odds-b-half", owners[3], 11500, 14500, odds, now), // half overlaps odds-b
		synthData("odds-c", owners[4], 20000, 23000, odds, now),      // disjoint
		synthData("stale", owners[5], 30000, 33000, append(append([]string{}, evens...), odds...), now.Add(-48*time.Hour)),
	}
	s := snapOf(t, owners[0], now, owners, items)
	q := GroupQuery{Task: "digits-classification", Labels: append(append([]string{}, evens...), odds...),
		MinSamples: 5000, MaxAge: 24 * time.Hour}
	got, err := s.Groups(q)
	if err != nil {
		t.Fatal(err)
	}
	best := strings.Join(got[0].Datasets, ",")
	if best != "evens-a,odds-b" && best != "evens-a,odds-c" && best != "evens-a-copy,odds-b" && best != "evens-a-copy,odds-c" {
		t.Fatalf("best group %s, want one evens set with one disjoint odds set", best)
	}
	for _, g := range got {
		joined := strings.Join(g.Datasets, ",")
		if strings.Contains(joined, "stale") {
			t.Fatalf("group %s uses a dataset older than max age", joined)
		}
		if strings.Contains(joined, "evens-a,evens-a-copy") {
			t.Fatalf("group %s uses two copies of the same data", joined)
		}
	}
	// Excluding both holders of the evens makes it infeasible...
	q.Exclude = []peer.ID{owners[0], owners[1]}
	if _, err := s.Groups(q); err == nil {
		t.Fatal("feasible without any even digits")
	}
	// ...unless the stale all-digits set is allowed.
	q.MaxAge = 0
	got, err = s.Groups(q)
	if err != nil || !strings.Contains(strings.Join(got[0].Datasets, ","), "stale") {
		t.Fatalf("got %v, %v; want a group with the stale set", got, err)
	}
}

func TestGroupsBadQuery(t *testing.T) {
	s := snapOf(t, "p", time.Now(), nil, nil)
	for _, q := range []GroupQuery{{}, {Task: "x", MinSamples: -1}, {Task: "x", MaxAge: -time.Second}} {
		if _, err := s.Groups(q); err == nil {
			t.Fatalf("query %+v accepted", q)
		}
	}
}

func TestEdgesAndViews(t *testing.T) {
	now := time.Now()
	owners := testPeers(4)
	a := synthData("a", owners[0], 0, 1000, []string{"0", "1"}, now)
	b := synthData("b", owners[1], 500, 1500, []string{"2", "3"}, now)
	m := &Item{ID: "m", Kind: KindModel, Owner: owners[2], Skills: []string{"classify-digits"}, Task: "digits-classification", Issued: now, Expires: now.Add(time.Hour)}
	orphan := synthData("orphan", "gone", 0, 10, []string{"0"}, now)
	peers := []*PeerInfo{
		{ID: owners[0], Issued: now, RTTs: map[peer.ID]time.Duration{owners[1]: 3 * time.Millisecond}},
		{ID: owners[1], Issued: now}, {ID: owners[2], Issued: now}, {ID: owners[3], Issued: now, Roles: []string{"compute"}},
	}
	s, errs := NewSnapshot(owners[0], now, peers, []*Item{a, b, m, orphan}, map[peer.ID]time.Duration{owners[2]: 7 * time.Millisecond})
	if errs != nil {
		t.Fatal(errs)
	}
	kinds := map[string]int{}
	for _, e := range s.Edges() {
		kinds[e.Kind]++
	}
	want := map[string]int{EdgeHosts: 3, EdgeServesSkill: 1, EdgeRTT: 2, EdgeOverlaps: 1, EdgeComplements: 2}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s edges, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	if d, ok := s.RTT(owners[1], owners[0]); !ok || d != 3*time.Millisecond {
		t.Errorf("RTT from beacon = %v %v", d, ok)
	}
	if d, ok := s.RTT(owners[2], owners[0]); !ok || d != 7*time.Millisecond {
		t.Errorf("RTT measured by self = %v %v", d, ok)
	}
	v := s.View(Filter{Task: "digits-classification", Labels: []string{"2"}, Compute: true})
	if v.Item("a") != nil || v.Item("b") == nil || v.Item("m") == nil || v.Item("orphan") != nil {
		t.Errorf("job view items: %v", v.Items(""))
	}
	if v.Peer(owners[3]) == nil {
		t.Error("job view lacks the compute peer")
	}
	q := s.View(Filter{Skill: "classify-digits"})
	if len(q.Items("")) != 1 || q.Item("m") == nil {
		t.Errorf("skill view: %v", q.Items(""))
	}
	doc := s.Document(true)
	if len(doc.Peers) != 4 || len(doc.Items) != 4 || len(doc.Edges) == 0 {
		t.Errorf("document: %d peers %d items %d edges", len(doc.Peers), len(doc.Items), len(doc.Edges))
	}
}

func TestParseLabels(t *testing.T) {
	cases := []struct {
		in   string
		want string
		err  bool
	}{
		{"0-9", "0,1,2,3,4,5,6,7,8,9", false},
		{"0-2, 7", "0,1,2,7", false},
		{"cat,dog", "cat,dog", false},
		{"", "", false},
		{"1,1", "", true},
		{"5-2", "", true},
		{"0-1000", "", true},
		{"a,,b", "", true},
	}
	for _, c := range cases {
		got, err := ParseLabels(c.in)
		if (err != nil) != c.err || !c.err && strings.Join(got, ",") != c.want {
			t.Errorf("ParseLabels(%q) = %v, %v; want %q err=%v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestDocumentJSONRoundTrip(t *testing.T) {
	now := time.Now()
	_, a := newKey(t)
	_, b := newKey(t)
	s, _ := NewSnapshot(a, now, []*PeerInfo{{ID: a, Issued: now, RTTs: map[peer.ID]time.Duration{b: time.Millisecond}}, {ID: b, Issued: now}},
		[]*Item{synthData("d", a, 0, 10, []string{"0"}, now)}, map[peer.ID]time.Duration{b: 2 * time.Millisecond})
	raw, err := json.Marshal(s.Document(true))
	if err != nil {
		t.Fatal(err)
	}
	var doc Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decode document: %v\n%s", err, raw)
	}
	// Peers come sorted by ID, and the keys are random: find a by ID.
	var pa *PeerEntry
	for i := range doc.Peers {
		if doc.Peers[i].ID == a {
			pa = &doc.Peers[i]
		}
	}
	if len(doc.Peers) != 2 || pa == nil || len(pa.PeerRTTs) != 1 || pa.PeerRTTs[0].Peer != b || len(doc.Items) != 1 {
		t.Fatalf("round trip lost data: %s", raw)
	}
}

// TestGroupsWithoutLabels: with no labels asked, label coverage is no
// requirement, every dataset of the task is a candidate, and groups are
// still minimal and ranked by overlap, size, then unique samples.
func TestGroupsWithoutLabels(t *testing.T) {
	now := time.Now()
	owners := testPeers(4)
	items := []*Item{
		synthData("a", owners[0], 0, 3000, []string{"0", "1"}, now),
		synthData("a-half", owners[1], 1500, 4500, []string{"0", "1"}, now), // half overlaps a
		synthData("c", owners[2], 10000, 12000, []string{"2"}, now),
		{ID: "unlabelled", Kind: KindData, Owner: owners[3], Task: "digits-classification", Samples: 1000,
			Issued: now, Expires: now.Add(time.Hour), Updated: now},
	}
	s := snapOf(t, owners[0], now, owners, items)
	for _, tc := range []struct {
		name string
		q    GroupQuery
		best string // datasets of the best group, "" = ErrNoGroup
	}{
		{"nil labels, min 0", GroupQuery{MinSamples: 0}, "a"},
		{"empty labels, min 0", GroupQuery{Labels: []string{}}, "a"},
		{"no labels, one set suffices", GroupQuery{MinSamples: 2500}, "a"},
		{"no labels, needs a disjoint pair", GroupQuery{MinSamples: 5000}, "a,c"},
		{"no labels, unlabelled set counts", GroupQuery{MinSamples: 6000}, "a,c,unlabelled"},
		{"no labels, too many asked", GroupQuery{MinSamples: 9000}, ""},
		{"labels still required when asked", GroupQuery{Labels: []string{"2"}}, "c"},
		{"asked label nobody has", GroupQuery{Labels: []string{"9"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Task = "digits-classification"
			got, err := s.Groups(q)
			if tc.best == "" {
				if !errors.Is(err, ErrNoGroup) {
					t.Fatalf("got %v, %v; want ErrNoGroup", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b := strings.Join(got[0].Datasets, ","); b != tc.best {
				t.Fatalf("best group %s, want %s (all: %+v)", b, tc.best, got)
			}
			want := bruteGroups(s, q)
			if len(got) != min(len(want), 5) {
				t.Fatalf("%d groups, brute force finds %d (limit 5): %+v", len(got), len(want), got)
			}
			for _, g := range got {
				if g.Unique < float64(q.MinSamples) || len(g.Datasets) == 0 {
					t.Fatalf("infeasible group %+v", g)
				}
			}
		})
	}
}
