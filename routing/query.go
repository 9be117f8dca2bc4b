package routing

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/overlay"
)

// QuerySpec is what an inference client asks for.
type QuerySpec struct {
	Skill string `json:"skill"`
	// MaxLatency bounds the expected answer time (0: none).
	MaxLatency time.Duration `json:"max_latency,omitempty"`
	// MinAccuracy in [0,1] (0: none).
	MinAccuracy float64 `json:"min_accuracy,omitempty"`
	// MaxPrice per query (0: free or any, see AnyPrice).
	MaxPrice float64 `json:"max_price,omitempty"`
	// AnyPrice accepts any price when MaxPrice is 0.
	AnyPrice bool      `json:"any_price,omitempty"`
	Exclude  []peer.ID `json:"exclude,omitempty"`
	// Weights of the Q-IRCE score; zero value means DefaultWeights.
	Weights Weights `json:"weights,omitempty"`
}

// Weights of the Q-IRCE score. Each term is scaled to about 0..1 so the
// weights say how much one unit of each matters.
type Weights struct {
	Latency  float64 `json:"latency"`
	Load     float64 `json:"load"`
	Accuracy float64 `json:"accuracy"`
	Cost     float64 `json:"cost"`
}

// DefaultWeights favour accuracy, then latency, then load and cost.
var DefaultWeights = Weights{Latency: 1, Load: 0.5, Accuracy: 2, Cost: 0.5}

// Candidate is one model host able to answer a query, with its score
// (lower is better) and the figures behind it.
type Candidate struct {
	Model    string        `json:"model"`
	Host     peer.ID       `json:"host"`
	Score    float64       `json:"score"`
	Expected time.Duration `json:"expected_ns"` // RTT + model latency x (1 + queue)
	RTT      time.Duration `json:"rtt_ns"`
	RTTKnown bool          `json:"rtt_known"`
	CPU      int64         `json:"cpu"`
	Queue    int64         `json:"queue"`
	Accuracy float64       `json:"accuracy"`
	Price    float64       `json:"price"`
}

// ErrNoHost is returned by QIRCE when no reachable model meets the query.
var ErrNoHost = errors.New("no reachable model meets the query")

// unknownRTT is assumed for hosts this node has no round-trip figure for:
// pessimistic, so measured hosts win ties, but not disqualifying.
const unknownRTT = 100 * time.Millisecond

func (q *QuerySpec) validate() error {
	switch {
	case q.Skill == "":
		return fmt.Errorf("query field skill is empty: name the skill, e.g. classify-digits")
	case q.MaxLatency < 0:
		return fmt.Errorf("query field max_latency=%s: must be >= 0", q.MaxLatency)
	case q.MinAccuracy < 0 || q.MinAccuracy > 1 || math.IsNaN(q.MinAccuracy):
		return fmt.Errorf("query field min_accuracy=%v: want 0..1", q.MinAccuracy)
	case q.MaxPrice < 0 || math.IsNaN(q.MaxPrice):
		return fmt.Errorf("query field max_price=%v: must be >= 0", q.MaxPrice)
	}
	w := q.Weights
	for _, f := range []struct {
		n string
		v float64
	}{{"latency", w.Latency}, {"load", w.Load}, {"accuracy", w.Accuracy}, {"cost", w.Cost}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("query field weights.%s=%v: must be a finite number >= 0", f.n, f.v)
		}
	}
	return nil
}

// candidates evaluates every model of the skill; the ones failing a
// requirement come back with a reason.
func candidates(s *overlay.Snapshot, q *QuerySpec) (ok []Candidate, rejected []string) {
	excl := map[peer.ID]bool{}
	for _, p := range q.Exclude {
		excl[p] = true
	}
	for _, m := range s.Items(overlay.KindModel) {
		if !m.HasSkill(q.Skill) {
			continue
		}
		host := s.Peer(m.Owner)
		c := Candidate{Model: m.ID, Host: m.Owner, Accuracy: m.Accuracy, Price: m.Price}
		why := ""
		switch {
		case excl[m.Owner]:
			why = "host excluded"
		case host == nil:
			why = "host not reachable (no live beacon)"
		}
		if host != nil {
			c.CPU, c.Queue = host.Load.CPU, host.Load.Queue+host.Load.Queries
			c.RTT, c.RTTKnown = s.RTT(s.Self(), m.Owner)
			rtt := c.RTT
			if !c.RTTKnown {
				rtt = unknownRTT
			}
			lat := time.Duration(m.LatencyMs * float64(time.Millisecond))
			c.Expected = rtt + lat*time.Duration(1+c.Queue)
		}
		if why == "" {
			switch {
			case q.MinAccuracy > 0 && m.Accuracy < q.MinAccuracy:
				why = fmt.Sprintf("accuracy %.3g below %.3g", m.Accuracy, q.MinAccuracy)
			case q.MaxLatency > 0 && c.Expected > q.MaxLatency:
				why = fmt.Sprintf("expected %s, over %s", c.Expected.Round(time.Millisecond), q.MaxLatency)
			case !q.AnyPrice && m.Price > q.MaxPrice:
				why = fmt.Sprintf("price %.3g over %.3g", m.Price, q.MaxPrice)
			}
		}
		if why != "" {
			rejected = append(rejected, fmt.Sprintf("%s on %s: %s", short(m.ID), short(m.Owner.String()), why))
			continue
		}
		ok = append(ok, c)
	}
	return ok, rejected
}

// QFAM (query feasibility assessment) says whether some reachable model can
// answer the query within its QoS, with reasons when none can.
func QFAM(s *overlay.Snapshot, q QuerySpec) (Admission, error) {
	if err := q.validate(); err != nil {
		return Admission{}, err
	}
	ok, rejected := candidates(s, &q)
	a := Admission{Admit: len(ok) > 0}
	for _, c := range ok {
		a.Eligible = append(a.Eligible, c.Model)
	}
	switch {
	case len(ok) > 0:
	case len(rejected) == 0:
		a.Reasons = []string{fmt.Sprintf("no model in the map serves skill %q", q.Skill)}
	default:
		a.Reasons = []string{fmt.Sprintf("%d model(s) serve %q but none meets the request: %s", len(rejected), q.Skill, strings.Join(rejected, "; "))}
	}
	return a, nil
}

// QIRCE (query inference route and compute election) ranks the hosts able
// to answer, best first. The score, lower is better, is
//
//	w.Latency  * expected / ref_latency
//	+ w.Load     * cpu% / 100
//	+ w.Accuracy * (1 - accuracy)
//	+ w.Cost     * price / ref_price
//
// where expected = RTT + model latency x (1 + queued work), ref_latency is
// MaxLatency (or 100ms) and ref_price is MaxPrice (or 1). Ties go to the
// lower model id, so the choice is deterministic.
func QIRCE(s *overlay.Snapshot, q QuerySpec) ([]Candidate, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	ok, rejected := candidates(s, &q)
	if len(ok) == 0 {
		if len(rejected) == 0 {
			return nil, fmt.Errorf("skill %q: %w (none serves it)", q.Skill, ErrNoHost)
		}
		return nil, fmt.Errorf("skill %q: %w (%s)", q.Skill, ErrNoHost, strings.Join(rejected, "; "))
	}
	w := q.Weights
	if w == (Weights{}) {
		w = DefaultWeights
	}
	refLat := q.MaxLatency
	if refLat == 0 {
		refLat = 100 * time.Millisecond
	}
	refPrice := q.MaxPrice
	if refPrice == 0 {
		refPrice = 1
	}
	for i := range ok {
		c := &ok[i]
		c.Score = w.Latency*float64(c.Expected)/float64(refLat) + w.Load*float64(c.CPU)/100 +
			w.Accuracy*(1-c.Accuracy) + w.Cost*c.Price/refPrice
	}
	sort.Slice(ok, func(i, j int) bool {
		if ok[i].Score != ok[j].Score {
			return ok[i].Score < ok[j].Score
		}
		return ok[i].Model < ok[j].Model
	})
	return ok, nil
}
