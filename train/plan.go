package train

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/descriptors"
)

// Candidate is one dataset the client's map knows for the job's task.
type Candidate struct {
	Peer      peer.ID             `json:"peer"`
	Dataset   string              `json:"dataset"` // descriptor name on its owner
	Samples   int64               `json:"samples"`
	Age       time.Duration       `json:"age"`
	Sketch    *descriptors.Sketch `json:"-"`
	Reachable bool                `json:"reachable"`
}

// Key names a candidate uniquely: peer/dataset.
func (c Candidate) Key() string { return c.Peer.String() + "/" + c.Dataset }

// Evaluator is one MPVU the client's map knows.
type Evaluator struct {
	Peer      peer.ID `json:"peer"`
	Testset   string  `json:"testset"` // descriptor slot id
	Tasks     []string
	Samples   int64 `json:"samples"`
	Reachable bool  `json:"reachable"`
}

// Admission is T-FAM's answer for a job.
type Admission struct {
	OK        bool     `json:"ok"`
	Reasons   []string `json:"reasons,omitempty"`
	Datasets  int      `json:"datasets"`  // reachable datasets that fit
	Known     int      `json:"known"`     // datasets that fit, reachable or not
	MPVU      peer.ID  `json:"mpvu"`      // chosen evaluator
	Testset   string   `json:"testset"`   // its test set
	Evaluated int      `json:"evaluated"` // samples in that test set
}

// Admit is T-FAM: it decides whether a job is feasible on the map given as
// candidates and evaluators, and with which MPVU. It does no I/O.
func Admit(spec *JobSpec, data []Candidate, evals []Evaluator) Admission {
	var a Admission
	need := spec.Data.MinDatasets
	if need < 1 {
		need = 1
	}
	for _, c := range data {
		a.Known++
		if c.Reachable {
			a.Datasets++
		}
	}
	if a.Datasets < need {
		a.Reasons = append(a.Reasons, fmt.Sprintf("only %d of %d data shards reachable for task %s (%d known with at least %d samples)",
			a.Datasets, need, spec.Data.Task, a.Known, spec.Data.MinSamples))
	}
	var best *Evaluator
	for i := range evals {
		e := &evals[i]
		if !e.Reachable || !evaluatesTask(e, spec.Data.Task) {
			continue
		}
		if spec.Eval.MPVU != "" && e.Peer.String() != spec.Eval.MPVU {
			continue
		}
		// The largest held-out set gives the most trustworthy accuracy;
		// peer ID breaks ties so every client picks the same.
		if best == nil || e.Samples > best.Samples || (e.Samples == best.Samples && e.Peer < best.Peer) {
			best = e
		}
	}
	switch {
	case best == nil && spec.Eval.MPVU != "":
		a.Reasons = append(a.Reasons, fmt.Sprintf("MPVU %s named in evaluation.mpvu is not reachable or has no test set for task %s", spec.Eval.MPVU, spec.Data.Task))
	case best == nil:
		a.Reasons = append(a.Reasons, fmt.Sprintf("no MPVU with a test set for task %s", spec.Data.Task))
	default:
		a.MPVU, a.Testset, a.Evaluated = best.Peer, best.Testset, int(best.Samples)
	}
	a.OK = len(a.Reasons) == 0
	return a
}

func evaluatesTask(e *Evaluator, task string) bool {
	for _, t := range e.Tasks {
		if strings.EqualFold(t, task) {
			return true
		}
	}
	return false
}

// redundantJaccard is the sketch overlap above which a dataset counts as a
// copy of one already chosen.
const redundantJaccard = 0.9

// Choose is MTRCE for one round: from the reachable, not excluded
// candidates it drops datasets redundant with fresher or larger ones
// (content sketches), then samples k of the rest at random, seeded by seed
// and round so a restarted client makes the same choice. The model
// trains where the data is. It does no I/O.
func Choose(cands []Candidate, k int, seed uint64, round int, excluded map[string]string) []Candidate {
	var pool []Candidate
	for _, c := range cands {
		if !c.Reachable {
			continue
		}
		if _, bad := excluded[c.Peer.String()]; bad {
			continue
		}
		pool = append(pool, c)
	}
	// Freshest first (age of information), then largest, then by key.
	sort.Slice(pool, func(i, j int) bool {
		a, b := pool[i], pool[j]
		if a.Age != b.Age {
			return a.Age < b.Age
		}
		if a.Samples != b.Samples {
			return a.Samples > b.Samples
		}
		return a.Key() < b.Key()
	})
	var kept []Candidate
	for _, c := range pool {
		dup := false
		for _, o := range kept {
			if c.Sketch == nil || o.Sketch == nil {
				continue
			}
			if j, err := c.Sketch.Jaccard(o.Sketch); err == nil && j >= redundantJaccard {
				dup = true
				break
			}
		}
		if !dup {
			kept = append(kept, c)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Key() < kept[j].Key() })
	if k <= 0 || k >= len(kept) {
		return kept
	}
	r := rand.New(rand.NewPCG(seed, uint64(round)))
	r.Shuffle(len(kept), func(i, j int) { kept[i], kept[j] = kept[j], kept[i] })
	out := kept[:k]
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}
