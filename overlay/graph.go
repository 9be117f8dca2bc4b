package overlay

import (
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PeerInfo is what the map knows about one peer, from its latest beacon.
// A PeerInfo in a Snapshot is never modified.
type PeerInfo struct {
	ID              peer.ID                   `json:"id"`
	Self            bool                      `json:"self,omitempty"`
	Roles           []string                  `json:"roles,omitempty"`
	Load            Load                      `json:"load"`
	Free            Capacity                  `json:"free"`
	Reach           string                    `json:"reach"`
	Relayed         bool                      `json:"relayed,omitempty"`
	Descriptors     []string                  `json:"descriptors,omitempty"`
	DescriptorCount int64                     `json:"descriptor_count,omitempty"`
	RTTs            map[peer.ID]time.Duration `json:"-"` // measured by this peer; see PeerEntry.RTTs
	Seq             uint64                    `json:"seq"`
	Issued          time.Time                 `json:"issued"`
	Expires         time.Time                 `json:"expires"`
	Seen            time.Time                 `json:"seen"` // when this map last heard it
	BeaconBytes     int                       `json:"beacon_bytes,omitempty"`
}

// HasRole reports whether the peer announced role r.
func (p *PeerInfo) HasRole(r string) bool {
	for _, x := range p.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Snapshot is an immutable, consistent view of the map at one instant. It is
// cheap to take (the service shares it until the map changes) and safe to
// use from any goroutine. Planners receive a Snapshot and nothing else.
type Snapshot struct {
	taken   time.Time
	self    peer.ID
	version uint64
	peers   map[peer.ID]*PeerInfo
	items   map[string]*Item
	myRTT   map[peer.ID]time.Duration
}

// NewSnapshot assembles a snapshot from values. The service builds its own;
// planners' tests and benchmarks use this to make synthetic maps. Items
// failing validation are skipped and their errors returned.
func NewSnapshot(self peer.ID, taken time.Time, peers []*PeerInfo, items []*Item, myRTT map[peer.ID]time.Duration) (*Snapshot, []error) {
	s := &Snapshot{
		taken: taken, self: self,
		peers: make(map[peer.ID]*PeerInfo, len(peers)),
		items: make(map[string]*Item, len(items)),
		myRTT: make(map[peer.ID]time.Duration, len(myRTT)),
	}
	var errs []error
	for _, p := range peers {
		s.peers[p.ID] = p
	}
	for _, it := range items {
		if err := it.check(); err != nil {
			errs = append(errs, err)
			continue
		}
		s.items[it.ID] = it
	}
	for p, d := range myRTT {
		s.myRTT[p] = d
	}
	return s, errs
}

// Taken is the instant the snapshot describes; ages are relative to it.
func (s *Snapshot) Taken() time.Time { return s.taken }

// Self is the peer whose map this is.
func (s *Snapshot) Self() peer.ID { return s.self }

// Version grows with every change of the map the snapshot came from.
func (s *Snapshot) Version() uint64 { return s.version }

// Len returns the number of peers and items.
func (s *Snapshot) Len() (peers, items int) { return len(s.peers), len(s.items) }

// Peer returns a peer's info, or nil if the map does not know it.
func (s *Snapshot) Peer(id peer.ID) *PeerInfo { return s.peers[id] }

// Peers returns all peers sorted by ID.
func (s *Snapshot) Peers() []*PeerInfo {
	out := make([]*PeerInfo, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Item returns an item by id, or nil.
func (s *Snapshot) Item(id string) *Item { return s.items[id] }

// Items returns the items of one kind ("" for all), sorted by ID.
func (s *Snapshot) Items(kind Kind) []*Item {
	out := make([]*Item, 0, len(s.items))
	for _, it := range s.items {
		if kind == "" || it.Kind == kind {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Reachable reports whether the owner of an item is in the map (its beacon
// has not expired). Items of unreachable owners stay listed until their own
// expiry but planners do not use them.
func (s *Snapshot) Reachable(it *Item) bool {
	if it == nil {
		return false
	}
	_, ok := s.peers[it.Owner]
	return ok
}

// RTT returns the best known round-trip time between a and b: measured by
// this node when one side is self, else as reported in either side's beacon.
func (s *Snapshot) RTT(a, b peer.ID) (time.Duration, bool) {
	if a == b {
		return 0, true
	}
	if a == s.self {
		if d, ok := s.myRTT[b]; ok {
			return d, true
		}
	}
	if b == s.self {
		if d, ok := s.myRTT[a]; ok {
			return d, true
		}
	}
	if p := s.peers[a]; p != nil {
		if d, ok := p.RTTs[b]; ok {
			return d, true
		}
	}
	if p := s.peers[b]; p != nil {
		if d, ok := p.RTTs[a]; ok {
			return d, true
		}
	}
	return 0, false
}

// PeerAge is how long ago the peer's latest beacon was issued.
func (s *Snapshot) PeerAge(p *PeerInfo) time.Duration { return nonNeg(s.taken.Sub(p.Issued)) }

// ItemAge is the age of information of an item: time since its newest
// sample (Updated) when known, else since its descriptor was issued.
func (s *Snapshot) ItemAge(it *Item) time.Duration {
	if !it.Updated.IsZero() {
		return nonNeg(s.taken.Sub(it.Updated))
	}
	return nonNeg(s.taken.Sub(it.Issued))
}

func nonNeg(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// Filter selects the elements of a per-job view.
type Filter struct {
	// Task keeps datasets, test sets and models of this task.
	Task string
	// Skill keeps models serving this skill.
	Skill string
	// Labels, if set, keeps only datasets holding at least one of them.
	Labels []string
	// MaxAge, if set, drops items whose age of information is larger.
	MaxAge time.Duration
	// Compute keeps compute offers (and peers announcing role "compute").
	Compute bool
}

// View returns the per-job subgraph (the draft's DRRT-A for a training job,
// QRRT-A for a skill): matching items whose owner is reachable, their owners,
// compute offers if asked, self, and the RTTs among those peers. The result
// is itself a Snapshot, so planners treat both alike.
func (s *Snapshot) View(f Filter) *Snapshot {
	v := &Snapshot{taken: s.taken, self: s.self, version: s.version,
		peers: map[peer.ID]*PeerInfo{}, items: map[string]*Item{}, myRTT: s.myRTT}
	want := map[string]bool{}
	for _, l := range f.Labels {
		want[l] = true
	}
	for id, it := range s.items {
		if !s.Reachable(it) {
			continue
		}
		keep := false
		switch it.Kind {
		case KindData, KindTestset:
			keep = f.Task != "" && it.Task == f.Task
			if keep && len(want) > 0 && it.Kind == KindData {
				keep = false
				for l, n := range it.LabelDist {
					if n > 0 && want[l] {
						keep = true
						break
					}
				}
			}
		case KindModel:
			keep = (f.Skill != "" && it.HasSkill(f.Skill)) || (f.Task != "" && it.Task == f.Task)
		case KindCompute:
			keep = f.Compute
		}
		if keep && f.MaxAge > 0 && it.Kind != KindCompute && s.ItemAge(it) > f.MaxAge {
			keep = false
		}
		if keep {
			v.items[id] = it
			v.peers[it.Owner] = s.peers[it.Owner]
		}
	}
	if p := s.peers[s.self]; p != nil {
		v.peers[s.self] = p
	}
	if f.Compute {
		for id, p := range s.peers {
			if p.HasRole("compute") {
				v.peers[id] = p
			}
		}
	}
	return v
}
