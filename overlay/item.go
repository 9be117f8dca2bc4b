package overlay

import (
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Kind of a non-peer element of the map. The values match descriptor kinds.
type Kind string

// Element kinds besides peers.
const (
	KindData    Kind = "data"
	KindModel   Kind = "model"
	KindCompute Kind = "compute"
	KindTestset Kind = "testset"
)

// Item is what the map knows about one described thing (a dataset, model,
// compute offer or test set): the fields planners need, copied out of its
// descriptor. Overlay takes Items rather than descriptors so that it does not
// depend on the descriptor service; the node converts one into the other.
// An Item handed to the map must not be modified afterwards.
type Item struct {
	ID       string  `json:"id"`
	Kind     Kind    `json:"kind"`
	Owner    peer.ID `json:"owner"`
	Name     string  `json:"name,omitempty"`
	Task     string  `json:"task,omitempty"`
	Modality string  `json:"modality,omitempty"`

	// Data and test sets.
	Samples   int64            `json:"samples,omitempty"`
	LabelDist map[string]int64 `json:"label_dist,omitempty"`
	// Sketch is a MinHash sketch (K 32-bit minima); SketchAlgo must match for
	// two sketches to be compared.
	Sketch     []uint32 `json:"-"`
	SketchAlgo string   `json:"sketch_algo,omitempty"`
	// SketchBits is how many low bits of each minimum are kept (b-bit
	// MinHash); 0 means all 32.
	SketchBits int `json:"sketch_bits,omitempty"`
	// Policy is the data policy mode ("open", "train-in-place", "private").
	Policy string `json:"policy,omitempty"`
	// Updated is the newest sample's time; age of information is now-Updated.
	Updated time.Time `json:"updated,omitempty"`

	// Models.
	Arch      string   `json:"arch,omitempty"`
	Skills    []string `json:"skills,omitempty"`
	Accuracy  float64  `json:"accuracy,omitempty"`
	LatencyMs float64  `json:"latency_ms,omitempty"`

	// Compute offers.
	Cores    int      `json:"cores,omitempty"`
	MemoryMB int64    `json:"memory_mb,omitempty"`
	GPUs     int      `json:"gpus,omitempty"`
	Roles    []string `json:"roles,omitempty"`

	Price   float64   `json:"price,omitempty"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	// Seen is when this map learned the item (set by the map).
	Seen time.Time `json:"seen"`
}

// Labels returns the item's labels in sorted order.
func (it *Item) Labels() []string {
	out := make([]string, 0, len(it.LabelDist))
	for l, n := range it.LabelDist {
		if n > 0 {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// HasSkill reports whether a model item serves skill.
func (it *Item) HasSkill(skill string) bool {
	for _, s := range it.Skills {
		if s == skill {
			return true
		}
	}
	return false
}

func (it *Item) check() error {
	switch {
	case it == nil:
		return fmt.Errorf("item is nil")
	case it.ID == "":
		return fmt.Errorf("item field id is empty")
	case it.Owner == "":
		return fmt.Errorf("item %s field owner is empty", it.ID)
	case it.Samples < 0:
		return fmt.Errorf("item %s field samples=%d: must be >= 0", it.ID, it.Samples)
	case !it.Expires.IsZero() && !it.Issued.IsZero() && !it.Expires.After(it.Issued):
		return fmt.Errorf("item %s field expires=%s: must be after issued=%s", it.ID, it.Expires, it.Issued)
	}
	switch it.Kind {
	case KindData, KindModel, KindCompute, KindTestset:
	default:
		return fmt.Errorf("item %s field kind=%q: want data, model, compute or testset", it.ID, it.Kind)
	}
	for l, n := range it.LabelDist {
		if n < 0 {
			return fmt.Errorf("item %s field label_dist[%q]=%d: must be >= 0", it.ID, l, n)
		}
	}
	return nil
}

// Jaccard estimates the Jaccard similarity of the sample sets behind two
// MinHash sketches: the share of positions whose minima agree, corrected
// for chance agreement of b-bit minima (f-c)/(1-c) with c = 2^-b. It returns
// ok=false when the sketches are missing or not comparable.
func Jaccard(a, b *Item) (j float64, ok bool) {
	if a == nil || b == nil || len(a.Sketch) == 0 || len(a.Sketch) != len(b.Sketch) ||
		a.SketchAlgo != b.SketchAlgo || a.SketchBits != b.SketchBits {
		return 0, false
	}
	eq := 0
	for i := range a.Sketch {
		if a.Sketch[i] == b.Sketch[i] {
			eq++
		}
	}
	f := float64(eq) / float64(len(a.Sketch))
	if a.SketchBits > 0 && a.SketchBits < 32 {
		c := 1 / float64(uint64(1)<<uint(a.SketchBits))
		f = max(0, min(1, (f-c)/(1-c)))
	}
	return f, true
}

// Intersection estimates how many samples two datasets share: from
// J = |A∩B|/|A∪B| and |A∪B| = |A|+|B|-|A∩B| follows |A∩B| = J(|A|+|B|)/(1+J).
func Intersection(a, b *Item) float64 {
	j, ok := Jaccard(a, b)
	if !ok || j == 0 {
		return 0
	}
	return j * float64(a.Samples+b.Samples) / (1 + j)
}
