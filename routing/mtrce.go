package routing

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/overlay"
)

// Training modes of an assignment.
const (
	ModeOnData   = "on-data"   // the model goes to the data's own node
	ModeNearData = "near-data" // a compute node near the data trains it (data moves one short hop)
)

// Assignment is one dataset in a plan and where it trains.
type Assignment struct {
	Dataset string        `json:"dataset"`
	Owner   peer.ID       `json:"owner"`
	TrainOn peer.ID       `json:"train_on"`
	Mode    string        `json:"mode"`
	RTT     time.Duration `json:"rtt_ns,omitempty"` // owner <-> TrainOn when near-data
	Samples int64         `json:"samples"`
	Age     time.Duration `json:"age_ns"`
	Why     string        `json:"why"`
}

// Skip is a dataset of the task that the plan leaves out, and why.
type Skip struct {
	Dataset string `json:"dataset"`
	Reason  string `json:"reason"`
}

// Plan is MTRCE's answer: the rendezvous points of one job.
type Plan struct {
	Assignments []Assignment `json:"assignments"`
	Skipped     []Skip       `json:"skipped,omitempty"`
	// Core lists the least-overlap group that alone meets the requirements.
	Core    []string `json:"core"`
	Samples int64    `json:"samples"`
}

// ErrInfeasible is returned by MTRCE when no plan meets the job.
var ErrInfeasible = errors.New("no plan meets the job's requirements")

// MTRCE (model training route and compute election) plans a job on a
// snapshot. It starts from the relationship map's best group (least overlap
// meeting labels and samples), then adds the other usable datasets freshest
// first, skipping any whose estimated Jaccard with an already chosen one
// reaches the job's redundancy threshold, up to MaxDatasets. Each dataset
// trains on its own node (the model follows the data) unless the placement
// allows a compute node and either the owner has no free slot or placement
// is "compute"; the compute node is the reachable one with a free slot
// nearest the data by RTT (within MaxRTT), load breaking ties. Data whose
// policy is not "open" never moves.
func MTRCE(s *overlay.Snapshot, job JobSpec) (Plan, error) {
	if err := job.Validate(); err != nil {
		return Plan{}, err
	}
	elig, why := eligibleData(s, &job)
	var plan Plan
	for id, r := range why {
		plan.Skipped = append(plan.Skipped, Skip{Dataset: id, Reason: r})
	}
	var chosen []*overlay.Item
	byID := map[string]*overlay.Item{}
	for _, it := range elig {
		byID[it.ID] = it
	}
	if len(job.Datasets) > 0 {
		for _, id := range job.Datasets {
			it := byID[id]
			if it == nil {
				return Plan{}, fmt.Errorf("named dataset %s is not usable: %w", id, ErrInfeasible)
			}
			chosen = append(chosen, it)
		}
	} else {
		groups, err := s.Groups(overlay.GroupQuery{Task: job.Task, Labels: job.Labels, MinSamples: job.MinSamples,
			MaxAge: job.MaxAge, Exclude: job.Exclude, Limit: 1})
		if err != nil {
			if errors.Is(err, overlay.ErrNoGroup) {
				return Plan{}, fmt.Errorf("mtrce: %v: %w", err, ErrInfeasible)
			}
			return Plan{}, fmt.Errorf("mtrce: %w", err)
		}
		for _, id := range groups[0].Datasets {
			chosen = append(chosen, byID[id])
		}
	}
	in := map[string]bool{}
	for _, it := range chosen {
		in[it.ID] = true
		plan.Core = append(plan.Core, it.ID)
	}
	sort.Strings(plan.Core)
	// The rest, freshest first, then larger, then by id.
	rest := make([]*overlay.Item, 0, len(elig))
	for _, it := range elig {
		if !in[it.ID] {
			rest = append(rest, it)
		}
	}
	sort.Slice(rest, func(i, j int) bool {
		ai, aj := s.ItemAge(rest[i]), s.ItemAge(rest[j])
		if ai != aj {
			return ai < aj
		}
		if rest[i].Samples != rest[j].Samples {
			return rest[i].Samples > rest[j].Samples
		}
		return rest[i].ID < rest[j].ID
	})
	for _, it := range rest {
		if job.MaxDatasets > 0 && len(chosen) >= job.MaxDatasets {
			plan.Skipped = append(plan.Skipped, Skip{Dataset: it.ID, Reason: fmt.Sprintf("plan already has max_datasets=%d", job.MaxDatasets)})
			continue
		}
		if len(job.Labels) > 0 && useful(it, job.Labels) == 0 {
			plan.Skipped = append(plan.Skipped, Skip{Dataset: it.ID, Reason: "holds none of the asked labels"})
			continue
		}
		redundant := ""
		for _, c := range chosen {
			if j, ok := overlay.Jaccard(it, c); ok && j >= job.redundant() {
				redundant = fmt.Sprintf("redundant with %s (estimated overlap %.2f)", c.ID, j)
				break
			}
		}
		if redundant != "" {
			plan.Skipped = append(plan.Skipped, Skip{Dataset: it.ID, Reason: redundant})
			continue
		}
		chosen = append(chosen, it)
	}
	sort.Slice(plan.Skipped, func(i, j int) bool { return plan.Skipped[i].Dataset < plan.Skipped[j].Dataset })
	plan.Assignments = place(s, &job, chosen)
	for _, a := range plan.Assignments {
		plan.Samples += a.Samples
	}
	return plan, nil
}

// place decides where each chosen dataset trains. Compute slots are used up
// as they are given out, so one compute node is not handed everything.
func place(s *overlay.Snapshot, job *JobSpec, chosen []*overlay.Item) []Assignment {
	excl := job.excluded()
	slots := map[peer.ID]int64{}
	var compute []*overlay.PeerInfo
	for _, p := range s.Peers() {
		if p.HasRole("compute") && !excl[p.ID] && p.Free.Slots > 0 {
			compute = append(compute, p)
			slots[p.ID] = p.Free.Slots
		}
	}
	out := make([]Assignment, 0, len(chosen))
	for _, it := range chosen {
		a := Assignment{Dataset: it.ID, Owner: it.Owner, TrainOn: it.Owner, Mode: ModeOnData,
			Samples: useful(it, job.Labels), Age: s.ItemAge(it), Why: "the model follows the data"}
		owner := s.Peer(it.Owner)
		ownerBusy := owner != nil && owner.Free.Slots == 0 && owner.Load.CPU >= 90
		movable := it.Policy == "open"
		wantCompute := job.placement() == PlaceCompute || job.placement() == PlaceNear && ownerBusy
		switch {
		case job.placement() == PlaceOnData:
			a.Why = "placement is data: train where the data is"
		case !wantCompute:
		case !movable:
			a.Why = fmt.Sprintf("data policy %q keeps the data on its node", policyName(it.Policy))
			if ownerBusy {
				a.Why += " although it is busy"
			}
		default:
			if c, rtt, ok := nearest(s, it.Owner, compute, slots, job.maxRTT()); ok {
				slots[c]--
				a.TrainOn, a.Mode, a.RTT = c, ModeNearData, rtt
				a.Why = fmt.Sprintf("compute node %s is %s from the data", short(c.String()), rtt.Round(time.Microsecond))
				if ownerBusy {
					a.Why += "; the data's node is busy"
				}
			} else {
				a.Why = fmt.Sprintf("no compute node with a free slot within %s of the data", job.maxRTT())
			}
		}
		out = append(out, a)
	}
	return out
}

func nearest(s *overlay.Snapshot, owner peer.ID, compute []*overlay.PeerInfo, slots map[peer.ID]int64, maxRTT time.Duration) (peer.ID, time.Duration, bool) {
	var best *overlay.PeerInfo
	var bestRTT time.Duration
	for _, c := range compute {
		if slots[c.ID] <= 0 {
			continue
		}
		var rtt time.Duration
		if c.ID != owner {
			d, ok := s.RTT(owner, c.ID)
			if !ok || d > maxRTT {
				continue
			}
			rtt = d
		}
		if best == nil || rtt < bestRTT || rtt == bestRTT && (c.Load.CPU < best.Load.CPU || c.Load.CPU == best.Load.CPU && c.ID < best.ID) {
			best, bestRTT = c, rtt
		}
	}
	if best == nil {
		return "", 0, false
	}
	return best.ID, bestRTT, true
}

func policyName(p string) string {
	if p == "" {
		return "train-in-place"
	}
	return p
}

// SelectRound picks the k assignments trained in one round, deterministically
// from the job seed and round number (so a re-planned or restarted
// aggregator picks the same ones), spreading choice uniformly.
func SelectRound(plan Plan, round int, k int, seed uint64) []Assignment {
	n := len(plan.Assignments)
	if k <= 0 || n == 0 {
		return nil
	}
	if k >= n {
		return append([]Assignment(nil), plan.Assignments...)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	x := seed ^ uint64(round)*0x9e3779b97f4a7c15
	for i := n - 1; i > 0; i-- {
		x = splitmix(x)
		j := int(x % uint64(i+1))
		idx[i], idx[j] = idx[j], idx[i]
	}
	sel := idx[:k]
	sort.Ints(sel)
	out := make([]Assignment, k)
	for i, j := range sel {
		out[i] = plan.Assignments[j]
	}
	return out
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
