package routing

import (
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Placement says where a job's model may train.
type Placement string

// Placements. The draft's default is that the model follows the data.
const (
	// PlaceOnData trains only on the data's own node.
	PlaceOnData Placement = "data"
	// PlaceNear trains on the data's node when it has room, else on a
	// compute node near it (by RTT) if the data's policy lets it move.
	PlaceNear Placement = "near"
	// PlaceCompute prefers a compute node near the data whenever the
	// policy allows, keeping data owners' machines free.
	PlaceCompute Placement = "compute"
)

// JobSpec is what a training job requires of the network. It is what a
// client writes in job.toml (minus the model itself) and what T-FAM, MTRCE
// and TAG read.
type JobSpec struct {
	ID   string `json:"id,omitempty" toml:"id"`
	Task string `json:"task" toml:"task"`
	// Labels must all be covered by the chosen datasets together.
	Labels []string `json:"labels,omitempty" toml:"labels"`
	// MinSamples is the least number of unique samples (overlap removed).
	MinSamples int64 `json:"min_samples,omitempty" toml:"min_samples"`
	// MaxAge drops datasets whose newest sample is older.
	MaxAge time.Duration `json:"max_age,omitempty" toml:"max_age"`
	// Shards is how many distinct datasets must be reachable (0: any).
	Shards int `json:"shards,omitempty" toml:"shards"`
	// Datasets names datasets that must all take part (optional).
	Datasets []string `json:"datasets,omitempty" toml:"datasets"`
	// ClientsPerRound is K, the datasets trained on per round; 0 lets TAG
	// derive it from C and the number of planned datasets.
	ClientsPerRound int `json:"clients_per_round,omitempty" toml:"clients_per_round"`
	// TargetAccuracy in [0,1] (0: none). A target needs a reachable tester.
	TargetAccuracy float64 `json:"target_accuracy,omitempty" toml:"target_accuracy"`
	// Deadline (zero: none).
	Deadline time.Time `json:"deadline,omitempty" toml:"deadline"`
	Arch     string    `json:"arch,omitempty" toml:"arch"`
	// Exclude lists peers never to use (owners or compute).
	Exclude   []peer.ID `json:"exclude,omitempty" toml:"exclude"`
	Placement Placement `json:"placement,omitempty" toml:"placement"`
	// MaxRTT bounds how far (round trip) from the data a compute node may
	// be; default 50ms.
	MaxRTT time.Duration `json:"max_rtt,omitempty" toml:"max_rtt"`
	// RedundantJaccard is the estimated overlap above which a dataset is
	// skipped as redundant with one already chosen; default 0.8.
	RedundantJaccard float64 `json:"redundant_jaccard,omitempty" toml:"redundant_jaccard"`
	// MaxDatasets caps the plan (0: every useful, non-redundant dataset).
	MaxDatasets int      `json:"max_datasets,omitempty" toml:"max_datasets"`
	Settings    Settings `json:"settings,omitempty" toml:"settings"`
}

// Defaults applied when a JobSpec leaves them unset.
const (
	DefaultMaxRTT           = 50 * time.Millisecond
	DefaultRedundantJaccard = 0.8
)

// Validate checks the spec and names the first bad field.
func (j *JobSpec) Validate() error {
	switch {
	case j.Task == "":
		return fmt.Errorf("job field task is empty: name the task, e.g. digits-classification")
	case j.MinSamples < 0:
		return fmt.Errorf("job field min_samples=%d: must be >= 0", j.MinSamples)
	case j.MaxAge < 0:
		return fmt.Errorf("job field max_age=%s: must be >= 0", j.MaxAge)
	case j.Shards < 0:
		return fmt.Errorf("job field shards=%d: must be >= 0", j.Shards)
	case j.ClientsPerRound < 0:
		return fmt.Errorf("job field clients_per_round=%d: must be >= 0", j.ClientsPerRound)
	case j.TargetAccuracy < 0 || j.TargetAccuracy > 1 || math.IsNaN(j.TargetAccuracy):
		return fmt.Errorf("job field target_accuracy=%v: want 0..1 (0 for none)", j.TargetAccuracy)
	case j.MaxRTT < 0:
		return fmt.Errorf("job field max_rtt=%s: must be >= 0", j.MaxRTT)
	case j.RedundantJaccard < 0 || j.RedundantJaccard > 1 || math.IsNaN(j.RedundantJaccard):
		return fmt.Errorf("job field redundant_jaccard=%v: want 0..1 (0 for the default %.1f)", j.RedundantJaccard, DefaultRedundantJaccard)
	case j.MaxDatasets < 0:
		return fmt.Errorf("job field max_datasets=%d: must be >= 0", j.MaxDatasets)
	case len(j.Labels) > 64:
		return fmt.Errorf("job field labels: %d labels, at most 64 supported", len(j.Labels))
	}
	switch j.Placement {
	case "", PlaceOnData, PlaceNear, PlaceCompute:
	default:
		return fmt.Errorf("job field placement=%q: want %q, %q or %q", j.Placement, PlaceOnData, PlaceNear, PlaceCompute)
	}
	seen := map[string]bool{}
	for i, l := range j.Labels {
		if l == "" || seen[l] {
			return fmt.Errorf("job field labels[%d]=%q: empty or listed twice", i, l)
		}
		seen[l] = true
	}
	if _, err := j.Settings.check(); err != nil {
		return err
	}
	return nil
}

func (j *JobSpec) maxRTT() time.Duration {
	if j.MaxRTT > 0 {
		return j.MaxRTT
	}
	return DefaultMaxRTT
}

func (j *JobSpec) redundant() float64 {
	if j.RedundantJaccard > 0 {
		return j.RedundantJaccard
	}
	return DefaultRedundantJaccard
}

func (j *JobSpec) placement() Placement {
	if j.Placement == "" {
		return PlaceNear
	}
	return j.Placement
}

func (j *JobSpec) excluded() map[peer.ID]bool {
	m := make(map[peer.ID]bool, len(j.Exclude))
	for _, p := range j.Exclude {
		m[p] = true
	}
	return m
}
