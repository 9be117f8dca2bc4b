package train

import (
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/overlay"
	"github.com/daitn/daitn/routing"
)

// WithMap gives the client the node's live map (the overlay's G-DRRT).
// Admission then also runs routing.TFAM on it, and each round's data
// nodes come from routing.MTRCE's plan (model follows data), falling back
// to the built-in choice over the descriptors found when the plan names
// none of them.
func WithMap(snapshot func() *overlay.Snapshot) Option {
	return func(c *config) error { c.snapshot = snapshot; return nil }
}

// routingJob is the part of a job spec the routing planners read.
// settings.clients is an upper bound here (a round uses up to that many
// datasets), so it is not handed to T-FAM as a requirement.
func routingJob(spec *JobSpec, created time.Time, excluded map[string]string) routing.JobSpec {
	rj := routing.JobSpec{
		Task:           spec.Data.Task,
		MaxAge:         spec.Data.MaxAge.Duration,
		Shards:         spec.Data.MinDatasets,
		TargetAccuracy: spec.Target.Accuracy,
		Arch:           spec.Model.Arch,
		Placement:      routing.PlaceOnData,
	}
	if spec.Target.Deadline.Duration > 0 {
		rj.Deadline = created.Add(spec.Target.Deadline.Duration)
	}
	for p := range excluded {
		if id, err := peer.Decode(p); err == nil {
			rj.Exclude = append(rj.Exclude, id)
		}
	}
	return rj
}

// mapAdmit runs T-FAM on the live map; ok is false with the reasons when
// the map says the job cannot run.
func (s *Service) mapAdmit(spec *JobSpec) (reasons []string, ok bool) {
	if s.cfg.snapshot == nil {
		return nil, true
	}
	snap := s.cfg.snapshot()
	if snap == nil {
		return nil, true
	}
	adm, err := routing.TFAM(snap, withLabels(snap, routingJob(spec, time.Now(), nil)))
	if err != nil {
		return []string{"t-fam: " + err.Error()}, false
	}
	return adm.Reasons, adm.Admit
}

// mapChoose returns this round's datasets from MTRCE's plan on the live
// map, as candidates found through descriptors (only those, since they are
// the ones known reachable and not excluded), plus the plan's other
// datasets as spares. nil means: use the built-in choice.
func (s *Service) mapChoose(spec *JobSpec, created time.Time, st Settings, round int, cands []Candidate, excluded map[string]string) (chosen, spare []Candidate) {
	if s.cfg.snapshot == nil {
		return nil, nil
	}
	snap := s.cfg.snapshot()
	if snap == nil {
		return nil, nil
	}
	rj := withLabels(snap, routingJob(spec, created, excluded))
	rj.ClientsPerRound = 0
	plan, err := routing.MTRCE(snap, rj)
	if err != nil || len(plan.Assignments) == 0 {
		return nil, nil
	}
	byKey := map[string]Candidate{}
	for _, c := range cands {
		if c.Reachable {
			if _, bad := excluded[c.Peer.String()]; !bad {
				byKey[c.Key()] = c
			}
		}
	}
	resolve := func(as []routing.Assignment) []Candidate {
		var out []Candidate
		for _, a := range as {
			if a.TrainOn != "" && a.TrainOn != a.Owner {
				continue // only the data's own node trains here
			}
			it := snap.Item(a.Dataset)
			if it == nil {
				continue
			}
			if c, ok := byKey[it.Owner.String()+"/"+it.Name]; ok {
				out = append(out, c)
				delete(byKey, c.Key())
			}
		}
		return out
	}
	k := st.Clients
	if k > len(plan.Assignments) {
		k = len(plan.Assignments)
	}
	chosen = resolve(routing.SelectRound(plan, round, k, st.Seed))
	if len(chosen) == 0 {
		return nil, nil
	}
	spare = resolve(plan.Assignments)
	return chosen, spare
}

// withLabels asks for every label the task's datasets on the map carry: the
// overlay's groups are built over asked labels, and a job spec has none.
func withLabels(snap *overlay.Snapshot, rj routing.JobSpec) routing.JobSpec {
	seen := map[string]bool{}
	for _, it := range snap.Items(overlay.KindData) {
		if !strings.EqualFold(it.Task, rj.Task) {
			continue
		}
		for _, l := range it.Labels() {
			if !seen[l] {
				seen[l] = true
				rj.Labels = append(rj.Labels, l)
			}
		}
	}
	sort.Strings(rj.Labels)
	if len(rj.Labels) > 64 {
		rj.Labels = rj.Labels[:64]
	}
	return rj
}
