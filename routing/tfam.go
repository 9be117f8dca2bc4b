package routing

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/daitn/daitn/overlay"
)

// Admission is T-FAM's or Q-FAM's answer. Reasons explain a rejection in
// words a person understands; Warnings do not block admission.
type Admission struct {
	Admit    bool     `json:"admit"`
	Reasons  []string `json:"reasons,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Eligible lists the datasets (T-FAM) or models (Q-FAM) that qualify.
	Eligible []string `json:"eligible,omitempty"`
}

// eligibleData returns the datasets of the job's task that may be used, and
// for the others a reason keyed by dataset id.
func eligibleData(s *overlay.Snapshot, job *JobSpec) (ok []*overlay.Item, why map[string]string) {
	why = map[string]string{}
	excl := job.excluded()
	for _, it := range s.Items(overlay.KindData) {
		if it.Task != job.Task {
			continue
		}
		switch {
		case excl[it.Owner]:
			why[it.ID] = fmt.Sprintf("owner %s is excluded", short(it.Owner.String()))
		case !s.Reachable(it):
			why[it.ID] = fmt.Sprintf("owner %s is not reachable (no live beacon)", short(it.Owner.String()))
		case job.MaxAge > 0 && s.ItemAge(it) > job.MaxAge:
			why[it.ID] = fmt.Sprintf("newest sample is %s old, job accepts %s", s.ItemAge(it).Round(1e9), job.MaxAge)
		default:
			ok = append(ok, it)
		}
	}
	return ok, why
}

// TFAM (training feasibility assessment) decides on a snapshot whether a
// job can run: named datasets reachable, enough distinct shards, every
// label covered, enough unique samples once overlap is removed, enough
// datasets for K clients per round, a tester if a target accuracy is set,
// deadline not passed. An invalid spec is an error, not a rejection.
func TFAM(s *overlay.Snapshot, job JobSpec) (Admission, error) {
	if err := job.Validate(); err != nil {
		return Admission{}, err
	}
	var a Admission
	reject := func(format string, args ...any) { a.Reasons = append(a.Reasons, fmt.Sprintf(format, args...)) }
	if !job.Deadline.IsZero() && !job.Deadline.After(s.Taken()) {
		reject("the deadline %s has already passed", job.Deadline.UTC().Format("2006-01-02 15:04:05Z"))
	}
	elig, why := eligibleData(s, &job)
	for _, it := range elig {
		a.Eligible = append(a.Eligible, it.ID)
	}
	if len(job.Datasets) > 0 {
		var missing []string
		for _, id := range job.Datasets {
			if s.Item(id) == nil {
				missing = append(missing, id+" (unknown)")
			} else if r, bad := why[id]; bad {
				missing = append(missing, id+" ("+r+")")
			}
		}
		if len(missing) > 0 {
			reject("only %d of %d named datasets are usable; missing: %s",
				len(job.Datasets)-len(missing), len(job.Datasets), strings.Join(missing, "; "))
		}
	}
	total := len(elig) + len(why)
	if len(elig) == 0 {
		if total == 0 {
			reject("no dataset for task %q is known to this node", job.Task)
		} else {
			reject("none of the %d datasets for task %q is usable (%s)", total, job.Task, firstReasons(why, 3))
		}
	}
	if job.Shards > 0 && len(elig) < job.Shards {
		reject("only %d of %d data shards reachable", len(elig), job.Shards)
	}
	if len(job.Labels) > 0 && len(elig) > 0 {
		have := map[string]bool{}
		for _, it := range elig {
			for l, n := range it.LabelDist {
				if n > 0 {
					have[l] = true
				}
			}
		}
		var miss []string
		for _, l := range job.Labels {
			if !have[l] {
				miss = append(miss, l)
			}
		}
		if len(miss) > 0 {
			reject("no reachable dataset has label(s) %s (%d of %d labels covered)",
				strings.Join(miss, ", "), len(job.Labels)-len(miss), len(job.Labels))
		}
	}
	var sum int64
	for _, it := range elig {
		sum += useful(it, job.Labels)
	}
	if job.MinSamples > 0 && sum < job.MinSamples && len(elig) > 0 {
		reject("reachable datasets hold %d samples in the asked labels, the job needs %d", sum, job.MinSamples)
	}
	if len(a.Reasons) == 0 && len(elig) > 0 {
		_, err := s.Groups(overlay.GroupQuery{Task: job.Task, Labels: job.Labels, MinSamples: job.MinSamples,
			MaxAge: job.MaxAge, Exclude: job.Exclude, Limit: 1})
		if errors.Is(err, overlay.ErrNoGroup) {
			reject("the reachable datasets overlap too much: no group holds %d unique samples once duplicates are removed", job.MinSamples)
		} else if err != nil {
			return Admission{}, fmt.Errorf("t-fam: %w", err)
		}
	}
	k := job.ClientsPerRound
	if k == 0 {
		k = job.Settings.ClientsPerRound
	}
	if k > 0 && len(elig) > 0 && len(elig) < k {
		reject("the job asks for %d clients per round but only %d datasets are usable", k, len(elig))
	}
	if job.TargetAccuracy > 0 && !hasTester(s, job.Task) {
		reject("a target accuracy of %.3g needs a reachable tester (MPVU or test set for %q); none is in the map", job.TargetAccuracy, job.Task)
	}
	if len(why) > 0 && len(a.Reasons) == 0 {
		a.Warnings = append(a.Warnings, fmt.Sprintf("%d of %d datasets for the task are not usable (%s)", len(why), total, firstReasons(why, 3)))
	}
	a.Admit = len(a.Reasons) == 0
	return a, nil
}

func hasTester(s *overlay.Snapshot, task string) bool {
	for _, it := range s.Items(overlay.KindTestset) {
		if it.Task == task && s.Reachable(it) {
			return true
		}
	}
	for _, p := range s.Peers() {
		if p.HasRole("mpvu") {
			return true
		}
	}
	return false
}

func useful(it *overlay.Item, labels []string) int64 {
	if len(labels) == 0 {
		return it.Samples
	}
	var n int64
	for _, l := range labels {
		n += it.LabelDist[l]
	}
	return n
}

func firstReasons(why map[string]string, n int) string {
	ids := make([]string, 0, len(why))
	for id := range why {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var parts []string
	for i, id := range ids {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(ids)-n))
			break
		}
		parts = append(parts, short(id)+": "+why[id])
	}
	return strings.Join(parts, "; ")
}

func short(s string) string {
	if len(s) > 16 {
		return s[:6] + "…" + s[len(s)-6:]
	}
	return s
}
