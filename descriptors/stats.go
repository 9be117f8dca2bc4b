package descriptors

import "sync/atomic"

// Stats are the service's counters since start (for metrics and the API).
type Stats struct {
	Known          int   `json:"known"`           // live descriptors in the cache (own and heard)
	Own            int   `json:"own"`             // descriptors this node publishes
	GossipAccepted int64 `json:"gossip_accepted"` // new versions accepted from gossip
	GossipRejected int64 `json:"gossip_rejected"` // forged, tampered, oversized or wrongly typed
	GossipIgnored  int64 `json:"gossip_ignored"`  // stale or duplicate
	DHTPuts        int64 `json:"dht_puts"`        // records and indexes put
	DHTPutErrors   int64 `json:"dht_put_errors"`
	Finds          int64 `json:"finds"`
	Synced         int64 `json:"synced"` // descriptors learnt from catch-up syncs
}

type counters struct {
	accepted, rejected, ignored, puts, putErrors, finds, synced atomic.Int64
}

// Stats returns a snapshot of the counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	known, own := len(s.cache), len(s.own)
	s.mu.Unlock()
	return Stats{
		Known: known, Own: own,
		GossipAccepted: s.ctr.accepted.Load(), GossipRejected: s.ctr.rejected.Load(), GossipIgnored: s.ctr.ignored.Load(),
		DHTPuts: s.ctr.puts.Load(), DHTPutErrors: s.ctr.putErrors.Load(), Finds: s.ctr.finds.Load(), Synced: s.ctr.synced.Load(),
	}
}
