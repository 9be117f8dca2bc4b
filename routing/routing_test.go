package routing

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/overlay"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func sketch(lo, hi uint64) []uint32 {
	s := make([]uint32, 128)
	for i := range s {
		s[i] = math.MaxUint32
	}
	for x := lo; x < hi; x++ {
		for i := range s {
			if v := uint32(splitmix(x*0x9e3779b97f4a7c15^uint64(i)) >> 32); v < s[i] {
				s[i] = v
			}
		}
	}
	return s
}

func pid(i int) peer.ID { return peer.ID(fmt.Sprintf("peer-%02d", i)) }

// world builds a snapshot from compact descriptions.
type world struct {
	peers []*overlay.PeerInfo
	items []*overlay.Item
	myRTT map[peer.ID]time.Duration
}

func (w *world) peer(i int, roles []string, free int64, cpu int64) *overlay.PeerInfo {
	p := &overlay.PeerInfo{ID: pid(i), Roles: roles, Free: overlay.Capacity{Slots: free}, Load: overlay.Load{CPU: cpu},
		Issued: now, Expires: now.Add(time.Minute), RTTs: map[peer.ID]time.Duration{}}
	w.peers = append(w.peers, p)
	return p
}

func (w *world) data(id string, owner int, lo, hi uint64, labels []string, age time.Duration, policy string) *overlay.Item {
	dist := map[string]int64{}
	for i := lo; i < hi; i++ {
		dist[labels[int(i-lo)%len(labels)]]++
	}
	it := &overlay.Item{ID: id, Kind: overlay.KindData, Owner: pid(owner), Task: "digits", Samples: int64(hi - lo),
		LabelDist: dist, Sketch: sketch(lo, hi), SketchAlgo: "t", Policy: policy,
		Updated: now.Add(-age), Issued: now.Add(-age), Expires: now.Add(time.Hour)}
	w.items = append(w.items, it)
	return it
}

func (w *world) snap(t testing.TB) *overlay.Snapshot {
	t.Helper()
	s, errs := overlay.NewSnapshot(pid(0), now, w.peers, w.items, w.myRTT)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return s
}

var digits = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// tenShards: one dataset per digit, owner i holds digit i, 1000 samples each.
func tenShards(reachable int) *world {
	w := &world{}
	w.peer(0, []string{"client", "mpvu"}, 0, 0)
	for i := 0; i < 10; i++ {
		if i < reachable {
			w.peer(i+1, []string{"data"}, 1, 10)
		}
		w.data(fmt.Sprintf("shard-%d", i), i+1, uint64(i)*1000, uint64(i+1)*1000, []string{digits[i]}, time.Hour, "")
	}
	return w
}

func TestTFAM(t *testing.T) {
	base := JobSpec{Task: "digits", Labels: digits, MinSamples: 5000, Shards: 10}
	cases := []struct {
		name   string
		w      *world
		job    func(j *JobSpec)
		admit  bool
		reason string
	}{
		{"all ten shards", tenShards(10), func(j *JobSpec) {}, true, ""},
		{"three of ten reachable", tenShards(3), func(j *JobSpec) {}, false, "only 3 of 10 data shards reachable"},
		{"labels missing", tenShards(8), func(j *JobSpec) { j.Shards = 0 }, false, "no reachable dataset has label(s) 8, 9"},
		{"too few samples", tenShards(10), func(j *JobSpec) { j.MinSamples = 20000 }, false, "hold 10000 samples in the asked labels, the job needs 20000"},
		{"stale data", tenShards(10), func(j *JobSpec) { j.MaxAge = 30 * time.Minute }, false, "none of the 10 datasets"},
		{"excluded owner", tenShards(10), func(j *JobSpec) { j.Exclude = []peer.ID{pid(4)} }, false, "only 9 of 10 data shards"},
		{"named dataset unknown", tenShards(10), func(j *JobSpec) { j.Datasets = []string{"shard-1", "nope"} }, false, "only 1 of 2 named datasets"},
		{"deadline passed", tenShards(10), func(j *JobSpec) { j.Deadline = now.Add(-time.Minute) }, false, "deadline"},
		{"clients per round", tenShards(10), func(j *JobSpec) { j.ClientsPerRound = 12 }, false, "12 clients per round but only 10"},
		{"unknown task", tenShards(10), func(j *JobSpec) { j.Task = "speech" }, false, `no dataset for task "speech"`},
		{"target with tester", tenShards(10), func(j *JobSpec) { j.TargetAccuracy = 0.97 }, true, ""},
		// No labels asked: coverage is no requirement, any dataset counts.
		{"no labels, no min samples", tenShards(10), func(j *JobSpec) { j.Labels, j.MinSamples = nil, 0 }, true, ""},
		{"no labels, min samples", tenShards(10), func(j *JobSpec) { j.Labels = nil }, true, ""},
		{"no labels, too few samples", tenShards(10), func(j *JobSpec) { j.Labels, j.MinSamples = nil, 20000 }, false, "the job needs 20000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := base
			c.job(&job)
			a, err := TFAM(c.w.snap(t), job)
			if err != nil {
				t.Fatal(err)
			}
			if a.Admit != c.admit {
				t.Fatalf("admit = %v, want %v; reasons %q", a.Admit, c.admit, a.Reasons)
			}
			if c.reason != "" && !strings.Contains(strings.Join(a.Reasons, " | "), c.reason) {
				t.Fatalf("reasons %q lack %q", a.Reasons, c.reason)
			}
		})
	}
	t.Run("overlap makes it infeasible", func(t *testing.T) {
		w := &world{}
		w.peer(0, nil, 0, 0)
		for i := 1; i <= 4; i++ {
			w.peer(i, []string{"data"}, 1, 0)
			w.data(fmt.Sprintf("copy-%d", i), i, 0, 2000, digits, time.Hour, "") // four copies of one set
		}
		a, err := TFAM(w.snap(t), JobSpec{Task: "digits", MinSamples: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if a.Admit || !strings.Contains(strings.Join(a.Reasons, " "), "overlap too much") {
			t.Fatalf("admission %+v, want a rejection for overlap", a)
		}
	})
	t.Run("no tester", func(t *testing.T) {
		w := tenShards(10)
		w.peers[0].Roles = []string{"client"}
		a, _ := TFAM(w.snap(t), JobSpec{Task: "digits", TargetAccuracy: 0.9})
		if a.Admit || !strings.Contains(strings.Join(a.Reasons, " "), "tester") {
			t.Fatalf("admission %+v, want a rejection for a missing tester", a)
		}
	})
}

func TestJobValidate(t *testing.T) {
	cases := []struct {
		mut  func(j *JobSpec)
		want string
	}{
		{func(j *JobSpec) { j.Task = "" }, "task is empty"},
		{func(j *JobSpec) { j.MinSamples = -1 }, "min_samples=-1"},
		{func(j *JobSpec) { j.TargetAccuracy = 1.5 }, "target_accuracy=1.5"},
		{func(j *JobSpec) { j.Placement = "moon" }, `placement="moon"`},
		{func(j *JobSpec) { j.Labels = []string{"1", "1"} }, "labels[1]"},
		{func(j *JobSpec) { j.Settings.C = 2 }, "settings.c=2"},
		{func(j *JobSpec) { j.Settings.LR = -0.1 }, "settings.lr=-0.1"},
		{func(j *JobSpec) { j.Settings.B = -7 }, "settings.b=-7"},
		{func(j *JobSpec) { j.Settings.Algorithm = "adam" }, `settings.algorithm="adam"`},
		{func(j *JobSpec) { j.RedundantJaccard = 3 }, "redundant_jaccard=3"},
	}
	for _, c := range cases {
		j := JobSpec{Task: "digits"}
		c.mut(&j)
		err := j.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
		if _, err := TFAM(tenShards(1).snap(t), j); err == nil {
			t.Errorf("TFAM accepted an invalid job (%s)", c.want)
		}
		if _, err := MTRCE(tenShards(1).snap(t), j); err == nil {
			t.Errorf("MTRCE accepted an invalid job (%s)", c.want)
		}
	}
}

func TestTAG(t *testing.T) {
	s, notes, err := TAG(JobSpec{Task: "digits"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{Algorithm: "fedavg", C: 0.1, E: 5, B: 10, LR: 0.1, Rounds: 100, ClientsPerRound: 10}
	if s != want {
		t.Fatalf("defaults %+v, want %+v", s, want)
	}
	if len(notes) < 5 {
		t.Fatalf("notes %q", notes)
	}
	cases := []struct {
		job  JobSpec
		n    int
		want Settings
		err  string
	}{
		{JobSpec{Task: "x", Settings: Settings{E: 1, B: 50, LR: 0.05}}, 10, Settings{Algorithm: "fedavg", C: 0.1, E: 1, B: 50, LR: 0.05, Rounds: 100, ClientsPerRound: 1}, ""},
		{JobSpec{Task: "x", ClientsPerRound: 5}, 20, Settings{Algorithm: "fedavg", C: 0.25, E: 5, B: 10, LR: 0.1, Rounds: 100, ClientsPerRound: 5}, ""},
		{JobSpec{Task: "x", Settings: Settings{C: 1}}, 3, Settings{Algorithm: "fedavg", C: 1, E: 5, B: 10, LR: 0.1, Rounds: 100, ClientsPerRound: 3}, ""},
		{JobSpec{Task: "x", Settings: Settings{Algorithm: "fedsgd"}}, 10, Settings{Algorithm: "fedsgd", C: 0.1, E: 1, B: -1, LR: 0.1, Rounds: 100, ClientsPerRound: 1}, ""},
		{JobSpec{Task: "x", Settings: Settings{Algorithm: "fedsgd", E: 5}}, 10, Settings{}, "fedsgd means e=1"},
		{JobSpec{Task: "x", ClientsPerRound: 30}, 10, Settings{}, "only 10 datasets"},
		{JobSpec{Task: "x", Settings: Settings{E: -1}}, 10, Settings{}, "settings.e=-1"},
	}
	for i, c := range cases {
		got, _, err := TAG(c.job, c.n)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("case %d: err %v, want %q", i, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("case %d: got %+v, %v; want %+v", i, got, err, c.want)
		}
	}
}

func TestMTRCEPlacementAndRedundancy(t *testing.T) {
	w := &world{myRTT: map[peer.ID]time.Duration{}}
	w.peer(0, []string{"client"}, 0, 0)
	busy := w.peer(1, []string{"data"}, 0, 95)     // owner with no room
	w.peer(2, []string{"data"}, 2, 10)             // owner with room
	farC := w.peer(3, []string{"compute"}, 4, 10)  // compute far from 1
	nearC := w.peer(4, []string{"compute"}, 1, 50) // compute near 1, one slot
	w.peer(5, []string{"compute"}, 4, 0)           // excluded compute
	busy.RTTs[farC.ID] = 40 * time.Millisecond
	busy.RTTs[nearC.ID] = 2 * time.Millisecond
	busy.RTTs[pid(5)] = time.Millisecond
	w.data("open-busy", 1, 0, 3000, digits, time.Hour, "open")
	w.data("open-busy-2", 1, 10000, 13000, digits, time.Hour, "open")
	w.data("kept-busy", 1, 20000, 23000, digits, time.Hour, "")
	w.data("roomy", 2, 30000, 33000, digits, 2*time.Hour, "open")
	w.data("roomy-copy", 2, 30000, 33000, digits, 3*time.Hour, "open") // same samples
	w.data("old", 2, 40000, 43000, digits, 48*time.Hour, "open")
	job := JobSpec{Task: "digits", Labels: digits, MinSamples: 2000, MaxAge: 24 * time.Hour, Exclude: []peer.ID{pid(5)}}
	plan, err := MTRCE(w.snap(t), job)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Assignment{}
	for _, a := range plan.Assignments {
		got[a.Dataset] = a
	}
	skipped := map[string]string{}
	for _, s := range plan.Skipped {
		skipped[s.Dataset] = s.Reason
	}
	if !strings.Contains(skipped["old"], "old") || !strings.Contains(skipped["roomy-copy"], "redundant with roomy") && !strings.Contains(skipped["roomy"], "redundant with roomy-copy") {
		t.Fatalf("skips %v: want old (age) and one of the roomy copies (redundant)", skipped)
	}
	if a := got["open-busy"]; a.Mode != ModeNearData || a.TrainOn != nearC.ID {
		t.Errorf("open-busy: %+v, want near-data on the nearest compute %s", a, nearC.ID)
	}
	if a := got["open-busy-2"]; a.Mode != ModeNearData || a.TrainOn != farC.ID {
		t.Errorf("open-busy-2: %+v, want the far compute once the near one is full", a)
	}
	if a := got["kept-busy"]; a.Mode != ModeOnData || !strings.Contains(a.Why, "train-in-place") {
		t.Errorf("kept-busy: %+v, want on-data by policy", a)
	}
	if a := got["roomy"]; a.Dataset != "" && a.Mode != ModeOnData {
		t.Errorf("roomy: %+v, want on-data", a)
	}
	for _, a := range plan.Assignments {
		if a.TrainOn == pid(5) {
			t.Errorf("excluded compute used: %+v", a)
		}
	}
	// With a tight MaxRTT only the near node qualifies; the second busy set stays.
	job.MaxRTT = 5 * time.Millisecond
	plan, _ = MTRCE(w.snap(t), job)
	for _, a := range plan.Assignments {
		if a.Dataset == "open-busy-2" && (a.Mode != ModeOnData || !strings.Contains(a.Why, "no compute node")) {
			t.Errorf("open-busy-2 with max_rtt 5ms: %+v", a)
		}
	}
	// Placement "data" never moves anything.
	job.Placement = PlaceOnData
	plan, _ = MTRCE(w.snap(t), job)
	for _, a := range plan.Assignments {
		if a.Mode != ModeOnData {
			t.Errorf("placement data: %+v", a)
		}
	}
}

// TestMTRCEBruteForce: on random small maps, the plan's core is a group of
// least overlap (checked by exhaustive search), every near-data choice is
// the nearest compute with a slot (checked against all compute nodes), and
// no two planned datasets are redundant.
func TestMTRCEBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for trial := 0; trial < 30; trial++ {
		w := &world{myRTT: map[peer.ID]time.Duration{}}
		w.peer(0, []string{"client"}, 0, 0)
		nOwners, nCompute := 3+r.IntN(4), 1+r.IntN(3)
		for i := 1; i <= nOwners; i++ {
			w.peer(i, []string{"data"}, int64(r.IntN(2)), int64(r.IntN(2))*95)
		}
		for c := 0; c < nCompute; c++ {
			cp := w.peer(100+c, []string{"compute"}, 100, int64(r.IntN(50)))
			_ = cp
		}
		for i := 1; i <= nOwners; i++ {
			for c := 0; c < nCompute; c++ {
				w.peers[i].RTTs[pid(100+c)] = time.Duration(1+r.IntN(40)) * time.Millisecond
			}
		}
		nData := 4 + r.IntN(6)
		for d := 0; d < nData; d++ {
			lo := uint64(r.IntN(6)) * 500
			labels := digits[:2+r.IntN(8)]
			if r.IntN(2) == 0 {
				labels = digits[10-len(labels):]
			}
			w.data(fmt.Sprintf("d%d", d), 1+r.IntN(nOwners), lo, lo+uint64(300+r.IntN(900)), labels, time.Duration(r.IntN(5))*time.Hour, "open")
		}
		snap := w.snap(t)
		job := JobSpec{Task: "digits", Labels: digits, MinSamples: int64(300 + r.IntN(1500)), Placement: PlaceCompute, MaxRTT: time.Second}
		plan, err := MTRCE(snap, job)
		best := bruteBest(snap, job)
		if math.IsInf(best, 1) {
			if err == nil {
				t.Fatalf("trial %d: plan %v although brute force finds no feasible group", trial, plan.Core)
			}
			continue
		}
		if err != nil {
			t.Fatalf("trial %d: %v; brute force finds overlap %.1f", trial, err, best)
		}
		if got := math.Round(groupOverlap(snap, plan.Core)*1000) / 1000; math.Abs(got-best) > 1e-6 {
			t.Fatalf("trial %d: core %v overlap %.3f, optimum %.3f", trial, plan.Core, got, best)
		}
		for i, a := range plan.Assignments {
			if a.Mode != ModeNearData {
				t.Fatalf("trial %d: placement compute with free compute but %+v", trial, a)
			}
			for c := 0; c < nCompute; c++ {
				if d, _ := snap.RTT(a.Owner, pid(100+c)); d < a.RTT {
					t.Fatalf("trial %d: %s trains %s away, compute %d is %s away", trial, a.Dataset, a.RTT, c, d)
				}
			}
			for _, b := range plan.Assignments[:i] {
				if j, _ := overlay.Jaccard(snap.Item(a.Dataset), snap.Item(b.Dataset)); j >= DefaultRedundantJaccard {
					t.Fatalf("trial %d: %s and %s both planned with overlap %.2f", trial, a.Dataset, b.Dataset, j)
				}
			}
		}
	}
}

func groupOverlap(s *overlay.Snapshot, ids []string) float64 {
	ov := 0.0
	for i := range ids {
		for j := 0; j < i; j++ {
			ov += overlay.Intersection(s.Item(ids[i]), s.Item(ids[j]))
		}
	}
	return ov
}

// bruteBest returns the least overlap of any feasible group, +Inf if none.
func bruteBest(s *overlay.Snapshot, job JobSpec) float64 {
	items := s.Items(overlay.KindData)
	best := math.Inf(1)
	for m := 1; m < 1<<len(items); m++ {
		var ids []string
		var sum int64
		cover := map[string]bool{}
		for i, it := range items {
			if m&(1<<i) == 0 {
				continue
			}
			ids = append(ids, it.ID)
			sum += useful(it, job.Labels)
			for l, n := range it.LabelDist {
				if n > 0 {
					cover[l] = true
				}
			}
		}
		if len(cover) < len(job.Labels) {
			continue
		}
		ov := groupOverlap(s, ids)
		if float64(sum)-ov >= float64(job.MinSamples) && ov < best {
			best = ov
		}
	}
	return math.Round(best*1000) / 1000
}

func TestSelectRound(t *testing.T) {
	var plan Plan
	for i := 0; i < 10; i++ {
		plan.Assignments = append(plan.Assignments, Assignment{Dataset: fmt.Sprint(i)})
	}
	a, b := SelectRound(plan, 3, 4, 42), SelectRound(plan, 3, 4, 42)
	if len(a) != 4 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("not deterministic: %v vs %v", a, b)
	}
	counts := map[string]int{}
	for r := 0; r < 2000; r++ {
		for _, x := range SelectRound(plan, r, 3, 1) {
			counts[x.Dataset]++
		}
	}
	for d, n := range counts {
		if n < 450 || n > 750 { // expected 600
			t.Fatalf("dataset %s chosen %d times of 2000 rounds x 3/10", d, n)
		}
	}
	if len(SelectRound(plan, 0, 20, 1)) != 10 {
		t.Fatal("k > n should return all")
	}
}

func modelWorld() *world {
	w := &world{myRTT: map[peer.ID]time.Duration{pid(1): 5 * time.Millisecond, pid(2): 30 * time.Millisecond, pid(3): 2 * time.Millisecond}}
	w.peer(0, []string{"client"}, 0, 0)
	w.peer(1, []string{"host"}, 1, 20)
	w.peer(2, []string{"host"}, 1, 0)
	p3 := w.peer(3, []string{"host"}, 1, 90)
	p3.Load.Queue = 4
	add := func(id string, owner int, acc, lat, price float64) {
		w.items = append(w.items, &overlay.Item{ID: id, Kind: overlay.KindModel, Owner: pid(owner), Skills: []string{"classify-digits"},
			Accuracy: acc, LatencyMs: lat, Price: price, Issued: now, Expires: now.Add(time.Hour)})
	}
	add("m-fast", 1, 0.95, 2, 0)
	add("m-accurate", 2, 0.99, 5, 0)
	add("m-busy", 3, 0.97, 3, 0)
	add("m-pricey", 1, 0.99, 2, 5)
	add("m-gone", 9, 0.999, 1, 0)
	return w
}

func TestQFAMAndQIRCE(t *testing.T) {
	s := modelWorld().snap(t)
	cases := []struct {
		q      QuerySpec
		admit  bool
		best   string
		reason string
	}{
		{QuerySpec{Skill: "classify-digits"}, true, "m-fast", ""},
		{QuerySpec{Skill: "classify-digits", Weights: Weights{Latency: 1, Accuracy: 20}}, true, "m-accurate", ""},
		{QuerySpec{Skill: "classify-digits", Exclude: []peer.ID{pid(1), pid(2)}}, true, "m-busy", ""},
		{QuerySpec{Skill: "classify-digits", MinAccuracy: 0.98, AnyPrice: true, MaxLatency: 10 * time.Millisecond}, true, "m-pricey", ""},
		{QuerySpec{Skill: "classify-digits", MinAccuracy: 0.995}, false, "", "accuracy"},
		{QuerySpec{Skill: "translate"}, false, "", `no model in the map serves skill "translate"`},
		{QuerySpec{Skill: "classify-digits", Exclude: []peer.ID{pid(1), pid(2), pid(3)}}, false, "", "host excluded"},
	}
	for i, c := range cases {
		a, err := QFAM(s, c.q)
		if err != nil {
			t.Fatal(err)
		}
		if a.Admit != c.admit || c.reason != "" && !strings.Contains(strings.Join(a.Reasons, " "), c.reason) {
			t.Errorf("case %d: admission %+v, want admit=%v reason %q", i, a, c.admit, c.reason)
		}
		ranked, err := QIRCE(s, c.q)
		if c.admit {
			if err != nil || ranked[0].Model != c.best {
				t.Errorf("case %d: ranked %+v %v, want %s first", i, ranked, err, c.best)
			}
		} else if err == nil {
			t.Errorf("case %d: QIRCE answered %v for an infeasible query", i, ranked)
		}
	}
	if _, err := QIRCE(s, QuerySpec{}); err == nil || !strings.Contains(err.Error(), "skill is empty") {
		t.Errorf("empty skill: %v", err)
	}
	if _, err := QIRCE(s, QuerySpec{Skill: "x", Weights: Weights{Load: -1}}); err == nil {
		t.Error("negative weight accepted")
	}
}

// TestQIRCEBruteForce: on random maps the first candidate has the least
// score of every feasible model, recomputed independently.
func TestQIRCEBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for trial := 0; trial < 200; trial++ {
		w := &world{myRTT: map[peer.ID]time.Duration{}}
		w.peer(0, nil, 0, 0)
		for i := 1; i <= 5; i++ {
			p := w.peer(i, []string{"host"}, 1, int64(r.IntN(101)))
			p.Load.Queue = int64(r.IntN(3))
			if r.IntN(3) > 0 {
				w.myRTT[p.ID] = time.Duration(1+r.IntN(80)) * time.Millisecond
			}
		}
		for m := 0; m < 6; m++ {
			w.items = append(w.items, &overlay.Item{ID: fmt.Sprintf("m%d", m), Kind: overlay.KindModel, Owner: pid(1 + r.IntN(6)),
				Skills: []string{"s"}, Accuracy: r.Float64(), LatencyMs: float64(r.IntN(20)), Price: float64(r.IntN(3)),
				Issued: now, Expires: now.Add(time.Hour)})
		}
		s := w.snap(t)
		q := QuerySpec{Skill: "s", MaxLatency: time.Duration(20+r.IntN(100)) * time.Millisecond, MaxPrice: 1, MinAccuracy: r.Float64() / 2}
		ranked, err := QIRCE(s, q)
		best, bestScore := "", math.Inf(1)
		for _, m := range s.Items(overlay.KindModel) {
			h := s.Peer(m.Owner)
			if h == nil || m.Accuracy < q.MinAccuracy || m.Price > q.MaxPrice {
				continue
			}
			rtt, ok := s.RTT(pid(0), m.Owner)
			if !ok {
				rtt = unknownRTT
			}
			exp := rtt + time.Duration(m.LatencyMs*float64(time.Millisecond))*time.Duration(1+h.Load.Queue+h.Load.Queries)
			if exp > q.MaxLatency {
				continue
			}
			sc := float64(exp)/float64(q.MaxLatency) + 0.5*float64(h.Load.CPU)/100 + 2*(1-m.Accuracy) + 0.5*m.Price/q.MaxPrice
			if sc < bestScore-1e-12 || math.Abs(sc-bestScore) <= 1e-12 && m.ID < best {
				best, bestScore = m.ID, sc
			}
		}
		if best == "" {
			if err == nil {
				t.Fatalf("trial %d: QIRCE chose %s, brute force finds none", trial, ranked[0].Model)
			}
			continue
		}
		if err != nil || ranked[0].Model != best {
			t.Fatalf("trial %d: QIRCE %v %v, brute force %s (%.4f)", trial, ranked, err, best, bestScore)
		}
	}
}

func TestPlanJob(t *testing.T) {
	d, err := PlanJob(tenShards(10).snap(t), JobSpec{Task: "digits", Labels: digits, MinSamples: 5000, Shards: 10})
	if err != nil || !d.Admission.Admit || d.Plan == nil || len(d.Plan.Assignments) != 10 || d.Settings == nil || d.Settings.ClientsPerRound != 1 {
		t.Fatalf("decision %+v, %v", d, err)
	}
	d, err = PlanJob(tenShards(3).snap(t), JobSpec{Task: "digits", Shards: 10})
	if err != nil || d.Admission.Admit || d.Plan != nil {
		t.Fatalf("infeasible job: %+v, %v", d, err)
	}
	if _, err := PlanJob(tenShards(3).snap(t), JobSpec{}); err == nil {
		t.Fatal("invalid job accepted")
	}
}
