package overlay

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// GroupQuery states what a group of datasets must meet together: the draft's
// "data relationship map" request.
type GroupQuery struct {
	Task       string        `json:"task"`
	Labels     []string      `json:"labels,omitempty"`      // every one must be covered
	MinSamples int64         `json:"min_samples,omitempty"` // estimated unique samples, overlap removed
	MaxAge     time.Duration `json:"max_age,omitempty"`     // age of information per dataset
	Exclude    []peer.ID     `json:"exclude,omitempty"`     // owners not to use
	Limit      int           `json:"limit,omitempty"`       // groups to return, default 5
	// MaxCandidates bounds the datasets considered (default 200): the best
	// ones by useful samples and freshness, with the best few per label.
	MaxCandidates int `json:"max_candidates,omitempty"`
}

// Group is one answer: datasets that together meet a GroupQuery.
type Group struct {
	Datasets []string `json:"datasets"`
	Owners   []string `json:"owners"`
	// Samples is the sum of useful samples (in the asked labels, or all).
	Samples int64 `json:"samples"`
	// Overlap estimates the duplicated samples: the sum over pairs of the
	// MinHash-estimated intersections. Groups are ranked by it.
	Overlap float64 `json:"overlap"`
	// Unique is Samples - Overlap, the estimate checked against MinSamples.
	Unique float64       `json:"unique"`
	Labels []string      `json:"labels"`
	MaxAge time.Duration `json:"max_age_ns"`
	Exact  bool          `json:"exact"` // found by exhaustive search
}

// ExactGroupLimit is the largest candidate count searched exhaustively.
const ExactGroupLimit = 16

// ErrNoGroup is returned when no group of reachable datasets meets a query.
var ErrNoGroup = fmt.Errorf("no group of reachable datasets meets the requirements")

type groupCtx struct {
	q       GroupQuery
	s       *Snapshot
	cands   []*Item
	useful  []int64
	labels  []uint64 // bitmask of required labels covered per candidate
	need    uint64
	pair    [][]float64
	age     []time.Duration
	nLabels int
}

// Groups answers a relationship-map query on the snapshot: groups of
// reachable datasets of q.Task that together cover q.Labels (no coverage
// requirement when q.Labels is empty: every dataset of the task is a
// candidate) and hold at least q.MinSamples estimated unique samples, each
// group non-empty and minimal (no member
// can be dropped), ranked by least estimated overlap, then fewer datasets,
// then more unique samples, then freshness. Up to ExactGroupLimit candidates
// it is exhaustive; beyond, greedy set cover from several seeds followed by
// swap-based local improvement.
func (s *Snapshot) Groups(q GroupQuery) ([]Group, error) {
	if q.Task == "" {
		return nil, fmt.Errorf("group query field task is empty: name the task, e.g. digits-classification")
	}
	if q.MinSamples < 0 {
		return nil, fmt.Errorf("group query field min_samples=%d: must be >= 0", q.MinSamples)
	}
	if q.MaxAge < 0 {
		return nil, fmt.Errorf("group query field max_age=%s: must be >= 0", q.MaxAge)
	}
	if len(q.Labels) > 64 {
		return nil, fmt.Errorf("group query field labels: %d labels, at most 64 supported", len(q.Labels))
	}
	if q.Limit <= 0 {
		q.Limit = 5
	}
	if q.MaxCandidates <= 0 {
		q.MaxCandidates = 200
	}
	g := s.newGroupCtx(q)
	if len(g.cands) == 0 {
		if len(q.Labels) == 0 {
			return nil, fmt.Errorf("task %q: %w (no reachable, fresh dataset of the task)", q.Task, ErrNoGroup)
		}
		return nil, fmt.Errorf("task %q: %w (no reachable, fresh dataset has any of the labels)", q.Task, ErrNoGroup)
	}
	var sets []uint64Set
	exact := len(g.cands) <= ExactGroupLimit
	if exact {
		sets = g.exhaustive()
	} else {
		sets = g.heuristic()
	}
	if len(sets) == 0 {
		var have uint64
		var total float64
		for i := range g.cands {
			have |= g.labels[i]
			total += float64(g.useful[i])
		}
		var missing []string
		for i, l := range q.Labels {
			if have&(1<<uint(i)) == 0 {
				missing = append(missing, l)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("task %q: %w: no reachable dataset has label(s) %s", q.Task, ErrNoGroup, strings.Join(missing, ","))
		}
		return nil, fmt.Errorf("task %q: %w: %d candidate datasets hold %.0f samples in the asked labels before overlap, %d unique needed",
			q.Task, ErrNoGroup, len(g.cands), total, q.MinSamples)
	}
	out := make([]Group, 0, len(sets))
	for _, set := range sets {
		out = append(out, g.group(set, exact))
	}
	return out, nil
}

// uint64Set is a set of candidate indexes kept sorted.
type uint64Set []int

func (s *Snapshot) newGroupCtx(q GroupQuery) *groupCtx {
	g := &groupCtx{q: q, s: s, nLabels: len(q.Labels)}
	idx := map[string]int{}
	for i, l := range q.Labels {
		idx[l] = i
		g.need |= 1 << uint(i)
	}
	excl := map[peer.ID]bool{}
	for _, p := range q.Exclude {
		excl[p] = true
	}
	type cand struct {
		it     *Item
		useful int64
		mask   uint64
		age    time.Duration
	}
	var all []cand
	for _, it := range s.items {
		if it.Kind != KindData || it.Task != q.Task || !s.Reachable(it) || excl[it.Owner] {
			continue
		}
		age := s.ItemAge(it)
		if q.MaxAge > 0 && age > q.MaxAge {
			continue
		}
		c := cand{it: it, age: age}
		if len(q.Labels) == 0 {
			c.useful = it.Samples
		} else {
			for l, n := range it.LabelDist {
				if i, ok := idx[l]; ok && n > 0 {
					c.mask |= 1 << uint(i)
					c.useful += n
				}
			}
			if c.mask == 0 {
				continue
			}
		}
		all = append(all, c)
	}
	better := func(a, b cand) bool {
		if a.useful != b.useful {
			return a.useful > b.useful
		}
		if a.age != b.age {
			return a.age < b.age
		}
		return a.it.ID < b.it.ID
	}
	sort.Slice(all, func(i, j int) bool { return better(all[i], all[j]) })
	if len(all) > q.MaxCandidates {
		// Keep the best few holders of every label so rare labels stay
		// coverable, then fill with the best overall.
		keep := map[int]bool{}
		per := max(2, q.MaxCandidates/(2*max(1, len(q.Labels))))
		for li := range q.Labels {
			n := 0
			for i, c := range all {
				if n < per && c.mask&(1<<uint(li)) != 0 {
					keep[i] = true
					n++
				}
			}
		}
		for i := 0; i < len(all) && len(keep) < q.MaxCandidates; i++ {
			keep[i] = true
		}
		var sel []cand
		for i, c := range all {
			if keep[i] {
				sel = append(sel, c)
			}
		}
		all = sel
	}
	for _, c := range all {
		g.cands = append(g.cands, c.it)
		g.useful = append(g.useful, c.useful)
		g.labels = append(g.labels, c.mask)
		g.age = append(g.age, c.age)
	}
	n := len(g.cands)
	g.pair = make([][]float64, n)
	for i := range g.pair {
		g.pair[i] = make([]float64, n)
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			v := Intersection(g.cands[i], g.cands[j])
			g.pair[i][j], g.pair[j][i] = v, v
		}
	}
	return g
}

type eval struct {
	overlap float64
	useful  int64
	mask    uint64
	age     time.Duration
}

func (g *groupCtx) eval(set []int) eval {
	var e eval
	for k, i := range set {
		e.useful += g.useful[i]
		e.mask |= g.labels[i]
		e.age = max(e.age, g.age[i])
		for _, j := range set[:k] {
			e.overlap += g.pair[i][j]
		}
	}
	return e
}

func (g *groupCtx) feasible(e eval) bool {
	return e.mask&g.need == g.need && float64(e.useful)-e.overlap >= float64(g.q.MinSamples)
}

// minimal reports whether no member can be dropped while staying feasible.
// A single dataset always is: the empty group is no answer, even when the
// query asks for nothing (no labels, min_samples 0) and so would accept it.
func (g *groupCtx) minimal(set []int) bool {
	if len(set) <= 1 {
		return true
	}
	sub := make([]int, 0, len(set))
	for k := range set {
		sub = append(sub[:0], set[:k]...)
		sub = append(sub, set[k+1:]...)
		if g.feasible(g.eval(sub)) {
			return false
		}
	}
	return true
}

// less orders groups: least overlap, fewer datasets, more unique samples,
// fresher, then ids.
func (g *groupCtx) less(a, b []int) bool {
	ea, eb := g.eval(a), g.eval(b)
	const eps = 1e-9
	if d := ea.overlap - eb.overlap; d < -eps || d > eps {
		return d < 0
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	ua, ub := float64(ea.useful)-ea.overlap, float64(eb.useful)-eb.overlap
	if d := ua - ub; d < -eps || d > eps {
		return d > 0
	}
	if ea.age != eb.age {
		return ea.age < eb.age
	}
	return g.key(a) < g.key(b)
}

func (g *groupCtx) key(set []int) string {
	ids := make([]string, len(set))
	for k, i := range set {
		ids[k] = g.cands[i].ID
	}
	sort.Strings(ids)
	return strings.Join(ids, "\x00")
}

func (g *groupCtx) exhaustive() []uint64Set {
	n := len(g.cands)
	var found []uint64Set
	set := make([]int, 0, n)
	for m := uint32(1); m < 1<<uint(n); m++ {
		set = set[:0]
		for b := m; b != 0; b &= b - 1 {
			set = append(set, bits.TrailingZeros32(b))
		}
		if !g.feasible(g.eval(set)) || !g.minimal(set) {
			continue
		}
		found = append(found, append(uint64Set(nil), set...))
	}
	return g.rank(found)
}

func (g *groupCtx) rank(sets []uint64Set) []uint64Set {
	sort.Slice(sets, func(i, j int) bool { return g.less(sets[i], sets[j]) })
	if len(sets) > g.q.Limit {
		sets = sets[:g.q.Limit]
	}
	return sets
}

func (g *groupCtx) heuristic() []uint64Set {
	n := len(g.cands)
	seeds := min(n, max(3*g.q.Limit, 8))
	seen := map[string]bool{}
	var found []uint64Set
	for s := 0; s < seeds; s++ {
		set := g.greedy(s)
		if set == nil {
			continue
		}
		set = g.prune(set)
		set = g.improve(set)
		k := g.key(set)
		if !seen[k] {
			seen[k] = true
			found = append(found, set)
		}
	}
	return g.rank(found)
}

// greedy grows a group from seed: each step adds the candidate that covers
// the most still-missing labels, then the most useful samples net of twice
// the overlap it adds, until the group is feasible.
func (g *groupCtx) greedy(seed int) uint64Set {
	in := make([]bool, len(g.cands))
	set := uint64Set{seed}
	in[seed] = true
	e := g.eval(set)
	for !g.feasible(e) {
		best, bestNew, bestVal := -1, -1, 0.0
		for c := range g.cands {
			if in[c] {
				continue
			}
			added := 0.0
			for _, m := range set {
				added += g.pair[c][m]
			}
			nw := bits.OnesCount64(g.labels[c] &^ e.mask & g.need)
			val := float64(g.useful[c]) - 2*added
			if nw > bestNew || nw == bestNew && val > bestVal {
				best, bestNew, bestVal = c, nw, val
			}
		}
		if best < 0 || bestNew == 0 && bestVal <= 0 {
			return nil
		}
		set = append(set, best)
		in[best] = true
		e = g.eval(set)
	}
	sort.Ints(set)
	return set
}

// prune drops members, most overlapping first, while the group stays feasible.
func (g *groupCtx) prune(set uint64Set) uint64Set {
	for {
		order := append([]int(nil), set...)
		sort.Slice(order, func(a, b int) bool {
			return g.contrib(set, order[a]) > g.contrib(set, order[b])
		})
		dropped := false
		for _, m := range order {
			sub := without(set, m)
			if len(sub) > 0 && g.feasible(g.eval(sub)) {
				set, dropped = sub, true
				break
			}
		}
		if !dropped {
			return set
		}
	}
}

func (g *groupCtx) contrib(set []int, m int) float64 {
	v := 0.0
	for _, o := range set {
		if o != m {
			v += g.pair[m][o]
		}
	}
	return v
}

// improve swaps one member for one outsider while that gives a better
// feasible group, pruning after each swap; bounded rounds keep it cheap.
func (g *groupCtx) improve(set uint64Set) uint64Set {
	for round := 0; round < 20; round++ {
		improved := false
		for _, m := range set {
			for c := range g.cands {
				if contains(set, c) {
					continue
				}
				cand := append(without(set, m), c)
				sort.Ints(cand)
				if g.feasible(g.eval(cand)) && g.less(cand, set) {
					set, improved = g.prune(cand), true
					break
				}
			}
			if improved {
				break
			}
		}
		if !improved {
			return set
		}
	}
	return set
}

func without(set []int, m int) uint64Set {
	out := make(uint64Set, 0, len(set))
	for _, x := range set {
		if x != m {
			out = append(out, x)
		}
	}
	return out
}

func contains(set []int, c int) bool {
	for _, x := range set {
		if x == c {
			return true
		}
	}
	return false
}

func (g *groupCtx) group(set uint64Set, exact bool) Group {
	e := g.eval(set)
	gr := Group{Samples: e.useful, Overlap: round3(e.overlap), Unique: round3(float64(e.useful) - e.overlap),
		MaxAge: e.age, Exact: exact}
	idx := append([]int(nil), set...)
	sort.Slice(idx, func(a, b int) bool { return g.cands[idx[a]].ID < g.cands[idx[b]].ID })
	owners := map[string]bool{}
	for _, i := range idx {
		gr.Datasets = append(gr.Datasets, g.cands[i].ID)
		o := g.cands[i].Owner.String()
		if !owners[o] {
			owners[o] = true
			gr.Owners = append(gr.Owners, o)
		}
	}
	labels := map[string]bool{}
	for _, i := range idx {
		for l, n := range g.cands[i].LabelDist {
			if n > 0 {
				labels[l] = true
			}
		}
	}
	for l := range labels {
		gr.Labels = append(gr.Labels, l)
	}
	sort.Strings(gr.Labels)
	return gr
}
