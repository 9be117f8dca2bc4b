package taskpool

import (
	"sort"
	"time"
)

// Weights of the best-policy score. They need not sum to 1; only their
// ratios matter.
type Weights struct {
	Price      float64 `json:"price"`
	Time       float64 `json:"time"`
	Load       float64 `json:"load"`
	Reputation float64 `json:"reputation"`
}

// DefaultWeights favour price, then speed, then spare capacity, then track
// record.
var DefaultWeights = Weights{Price: 0.4, Time: 0.3, Load: 0.2, Reputation: 0.1}

// Score rates a bid for the best policy; higher is better. Every term is in
// [0,1]:
//
//	price term = 1 - price/max_price             (max_price > 0)
//	           = 1/(1+price)                     (no max price)
//	time term  = 1 - expected/time_left, clipped to [0,1]
//	             (time_left = deadline - now at decision time)
//	load term  = 1 - load                        (load is 0..1 as bid)
//	rep term   = reputation                      (0..1, see Reputation)
//
//	score = w.Price*price + w.Time*time + w.Load*load + w.Reputation*rep
//
// A bid above the max price is never scored; the poster drops it on receipt.
func Score(t *Task, b *Bid, rep float64, now time.Time, w Weights) float64 {
	var price float64
	if t.MaxPrice > 0 {
		price = clip01(1 - b.Price/t.MaxPrice)
	} else {
		price = 1 / (1 + b.Price)
	}
	left := float64(t.Deadline - now.UnixMilli())
	tm := 0.0
	if left > 0 {
		tm = clip01(1 - float64(b.ExpectedMs)/left)
	}
	return w.Price*price + w.Time*tm + w.Load*clip01(1-b.Load) + w.Reputation*clip01(rep)
}

// Reputation is the poster's local track record of an agent: Laplace's rule
// of succession over the results it delivered, (ok+1)/(ok+failed+2), so an
// unknown agent starts at 0.5. A lease that expired counts as a failure.
func Reputation(ok, failed int) float64 {
	return float64(ok+1) / float64(ok+failed+2)
}

func clip01(x float64) float64 {
	if x < 0 {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

// rankBids orders bids best first by Score, ties broken by bidder id so the
// choice is deterministic.
func rankBids(t *Task, bids []*bidEntry, rep func(string) float64, now time.Time, w Weights) {
	for _, b := range bids {
		b.score = Score(t, &b.Bid, rep(b.Bid.Bidder), now, w)
	}
	sort.SliceStable(bids, func(i, j int) bool {
		if bids[i].score != bids[j].score {
			return bids[i].score > bids[j].score
		}
		return bids[i].Bid.Bidder < bids[j].Bid.Bidder
	})
}
