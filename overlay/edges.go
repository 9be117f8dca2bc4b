package overlay

import (
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Edge kinds of the map graph.
const (
	EdgeHosts       = "hosts"        // peer -> item it owns
	EdgeRTT         = "rtt"          // peer -> peer, Weight = round trip in ms
	EdgeOverlaps    = "overlaps"     // dataset <-> dataset, Weight = estimated Jaccard
	EdgeComplements = "complements"  // dataset <-> dataset, Weight = share of labels only one side has
	EdgeServesSkill = "serves-skill" // model -> "skill:<name>"
)

// MinOverlapEdge is the smallest estimated Jaccard reported as an edge; below
// it MinHash noise (about 1/sqrt(K)) dominates.
const MinOverlapEdge = 0.05

// maxPairsPerTask bounds the pairwise overlap/complement computation of
// Edges: beyond it the graph would be quadratic in size and useless to draw;
// planners compute the pairs they need on their candidates instead.
const maxPairsPerTask = 400

// Edge is one relation of the map graph. Age is the age of the younger of
// the facts it is derived from.
type Edge struct {
	From   string        `json:"from"`
	To     string        `json:"to"`
	Kind   string        `json:"kind"`
	Weight float64       `json:"weight,omitempty"`
	Age    time.Duration `json:"age_ns"`
}

// Edges derives the graph's edges, sorted by kind, from, to.
func (s *Snapshot) Edges() []Edge {
	var out []Edge
	for _, it := range s.items {
		if p := s.peers[it.Owner]; p != nil {
			out = append(out, Edge{From: it.Owner.String(), To: it.ID, Kind: EdgeHosts, Age: s.PeerAge(p)})
		}
		if it.Kind == KindModel {
			for _, sk := range it.Skills {
				out = append(out, Edge{From: it.ID, To: "skill:" + sk, Kind: EdgeServesSkill, Age: s.ItemAge(it)})
			}
		}
	}
	for id, p := range s.peers {
		for q, d := range p.RTTs {
			if _, ok := s.peers[q]; ok {
				out = append(out, Edge{From: id.String(), To: q.String(), Kind: EdgeRTT, Weight: ms(d), Age: s.PeerAge(p)})
			}
		}
	}
	if me := s.peers[s.self]; me != nil {
		for q, d := range s.myRTT {
			if _, ok := s.peers[q]; ok {
				out = append(out, Edge{From: s.self.String(), To: q.String(), Kind: EdgeRTT, Weight: ms(d)})
			}
		}
	}
	byTask := map[string][]*Item{}
	for _, it := range s.items {
		if it.Kind == KindData && it.Task != "" {
			byTask[it.Task] = append(byTask[it.Task], it)
		}
	}
	for _, list := range byTask {
		if len(list) > maxPairsPerTask {
			continue
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		for i, a := range list {
			for _, b := range list[i+1:] {
				age := min(s.ItemAge(a), s.ItemAge(b))
				if j, ok := Jaccard(a, b); ok && j >= MinOverlapEdge {
					out = append(out, Edge{From: a.ID, To: b.ID, Kind: EdgeOverlaps, Weight: round3(j), Age: age})
				}
				if c := Complement(a, b); c > 0 {
					out = append(out, Edge{From: a.ID, To: b.ID, Kind: EdgeComplements, Weight: round3(c), Age: age})
				}
			}
		}
	}
	// Duplicate RTT edges (self's own measurement and its beacon) collapse
	// to the first after sorting; keep the graph simple.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	dedup := out[:0]
	for i, e := range out {
		if i > 0 && e.Kind == out[i-1].Kind && e.From == out[i-1].From && e.To == out[i-1].To {
			continue
		}
		dedup = append(dedup, e)
	}
	return dedup
}

// Complement is the share of the two datasets' union of labels held by only
// one of them, and 0 unless each side brings at least one label the other
// lacks: two shards of different digits complement each other fully (1).
func Complement(a, b *Item) float64 {
	onlyA, onlyB, union := 0, 0, 0
	for l, n := range a.LabelDist {
		if n <= 0 {
			continue
		}
		union++
		if b.LabelDist[l] <= 0 {
			onlyA++
		}
	}
	for l, n := range b.LabelDist {
		if n <= 0 {
			continue
		}
		if a.LabelDist[l] <= 0 {
			onlyB++
			union++
		}
	}
	if onlyA == 0 || onlyB == 0 || union == 0 {
		return 0
	}
	return float64(onlyA+onlyB) / float64(union)
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// Document is the JSON form of a snapshot served by GET /v1/map and read by
// `daitn map`.
type Document struct {
	Taken   time.Time   `json:"taken"`
	Self    string      `json:"self"`
	Version uint64      `json:"version"`
	Peers   []PeerEntry `json:"peers"`
	Items   []ItemEntry `json:"items"`
	Edges   []Edge      `json:"edges,omitempty"`
}

// PeerEntry is a peer with the figures a table shows.
type PeerEntry struct {
	*PeerInfo
	Age time.Duration `json:"age_ns"`
	// RTT from the map's owner, 0 when unknown.
	RTT time.Duration `json:"rtt_ns,omitempty"`
	// PeerRTTs are the round trips this peer reported in its beacon.
	PeerRTTs []RTTEntry `json:"rtts,omitempty"`
}

// RTTEntry is one reported round-trip time.
type RTTEntry struct {
	Peer peer.ID       `json:"peer"`
	RTT  time.Duration `json:"rtt_ns"`
}

// ItemEntry is an item with its age and whether its owner is reachable.
type ItemEntry struct {
	*Item
	Age       time.Duration `json:"age_ns"`
	Reachable bool          `json:"reachable"`
}

// Document renders the snapshot for the API; edges are included if asked.
func (s *Snapshot) Document(withEdges bool) Document {
	d := Document{Taken: s.taken, Self: s.self.String(), Version: s.version,
		Peers: []PeerEntry{}, Items: []ItemEntry{}}
	for _, p := range s.Peers() {
		rtt, _ := s.RTT(s.self, p.ID)
		e := PeerEntry{PeerInfo: p, Age: s.PeerAge(p), RTT: rtt}
		for q, d := range p.RTTs {
			e.PeerRTTs = append(e.PeerRTTs, RTTEntry{Peer: q, RTT: d})
		}
		sort.Slice(e.PeerRTTs, func(i, j int) bool { return e.PeerRTTs[i].Peer < e.PeerRTTs[j].Peer })
		d.Peers = append(d.Peers, e)
	}
	for _, it := range s.Items("") {
		d.Items = append(d.Items, ItemEntry{Item: it, Age: s.ItemAge(it), Reachable: s.Reachable(it)})
	}
	if withEdges {
		d.Edges = s.Edges()
	}
	return d
}
