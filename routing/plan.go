package routing

import "github.com/daitn/daitn/overlay"

// JobDecision is the whole answer for a training job on one snapshot.
type JobDecision struct {
	Admission Admission `json:"admission"`
	Plan      *Plan     `json:"plan,omitempty"`
	Settings  *Settings `json:"settings,omitempty"`
	Notes     []string  `json:"notes,omitempty"`
}

// PlanJob runs T-FAM, then (if admitted) MTRCE and TAG, on one snapshot: the
// call a training service makes before each (re)plan. An invalid job is an
// error; an infeasible one is a decision with Admit false and reasons.
func PlanJob(s *overlay.Snapshot, job JobSpec) (JobDecision, error) {
	adm, err := TFAM(s, job)
	if err != nil {
		return JobDecision{}, err
	}
	d := JobDecision{Admission: adm}
	if !adm.Admit {
		return d, nil
	}
	plan, err := MTRCE(s, job)
	if err != nil {
		d.Admission.Admit = false
		d.Admission.Reasons = append(d.Admission.Reasons, err.Error())
		return d, nil
	}
	st, notes, err := TAG(job, len(plan.Assignments))
	if err != nil {
		return JobDecision{}, err
	}
	d.Plan, d.Settings, d.Notes = &plan, &st, notes
	return d, nil
}
