package taskpool

import (
	"container/list"
	"fmt"
	"sort"
	"strings"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultReputationLimit is how many agents the poster's reputation book
// keeps unless WithReputationLimit says otherwise.
const DefaultReputationLimit = 10000

// RepRecord is one agent's line in the poster's reputation book.
type RepRecord struct {
	Agent   peer.ID   `json:"agent"`
	OK      int       `json:"ok"`
	Failed  int       `json:"failed"`
	Updated time.Time `json:"updated"`
	// Score is Reputation(OK, Failed): the rep term of the best policy,
	// unless WithReputation replaced the book.
	Score float64 `json:"score"`
}

const repPrefix = "/taskpool/rep/"

func repKey(agent string) ds.Key { return ds.NewKey(repPrefix + agent) }

// repRec is the stored form of one agent's line, under /taskpool/rep/<agent>.
type repRec struct {
	OK      int
	Failed  int
	Updated int64 // unix ms
}

type repEntry struct {
	agent string
	repRec
}

// repBook is the poster's reputation book: how many results each agent
// delivered ok or failed (an expired lease counts as failed), kept in the
// order the lines were last updated and bounded to max agents, the least
// recently updated going first. Updated times are strictly increasing in
// update order (an update in the same millisecond as the last, or after the
// clock stepped back, is stamped one past it), so the order the book is
// stored in is the order it comes back in. It does no I/O: note says what an outcome
// changes, ops turns that into store writes, apply makes it so in memory.
type repBook struct {
	max   int
	order *list.List // of *repEntry, least recently updated at the front
	byID  map[string]*list.Element
	last  int64 // the latest Updated in the book, unix ms
}

func newRepBook(max int) *repBook {
	return &repBook{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

// repChange is what one outcome does to the book: the agent's new line and
// the agents dropped to make room for it.
type repChange struct {
	entry repEntry
	evict []string
}

func (b *repBook) len() int { return b.order.Len() }

func (b *repBook) counts(agent string) (ok, failed int) {
	if el, found := b.byID[agent]; found {
		e := el.Value.(*repEntry)
		return e.OK, e.Failed
	}
	return 0, 0
}

// note computes the change an outcome of agent at now makes, without
// making it.
func (b *repBook) note(agent string, ok bool, now time.Time) repChange {
	e := repEntry{agent: agent}
	el, found := b.byID[agent]
	if found {
		e.repRec = el.Value.(*repEntry).repRec
	}
	if ok {
		e.OK++
	} else {
		e.Failed++
	}
	e.Updated = max(now.UnixMilli(), b.last+1)
	c := repChange{entry: e}
	if !found {
		over := b.order.Len() + 1 - b.max
		for el := b.order.Front(); el != nil && over > 0; el = el.Next() {
			c.evict = append(c.evict, el.Value.(*repEntry).agent)
			over--
		}
	}
	return c
}

// apply makes a change computed by note on the book as it is now.
func (b *repBook) apply(c repChange) {
	b.drop(c.evict)
	b.last = max(b.last, c.entry.Updated)
	if el, found := b.byID[c.entry.agent]; found {
		*el.Value.(*repEntry) = c.entry
		b.order.MoveToBack(el)
		return
	}
	e := c.entry
	b.byID[e.agent] = b.order.PushBack(&e)
}

func (b *repBook) drop(agents []string) {
	for _, a := range agents {
		if el, found := b.byID[a]; found {
			b.order.Remove(el)
			delete(b.byID, a)
		}
	}
}

// ops are the store writes of a change: the agent's line and the deletion
// of the lines it evicts.
func (c repChange) ops() []storeOp {
	// A struct of integers always encodes.
	v, _ := encMode.Marshal(&c.entry.repRec)
	ops := []storeOp{{key: repKey(c.entry.agent), val: v}}
	for _, a := range c.evict {
		ops = append(ops, storeOp{key: repKey(a), del: true})
	}
	return ops
}

// load fills an empty book with stored lines, oldest update first, and
// returns the agents beyond the bound, which it leaves out.
func (b *repBook) load(entries []repEntry) (evicted []string) {
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Updated != entries[j].Updated {
			return entries[i].Updated < entries[j].Updated
		}
		return entries[i].agent < entries[j].agent
	})
	if over := len(entries) - b.max; over > 0 {
		for _, e := range entries[:over] {
			evicted = append(evicted, e.agent)
		}
		entries = entries[over:]
	}
	for _, e := range entries {
		b.byID[e.agent] = b.order.PushBack(&e)
		b.last = max(b.last, e.Updated)
	}
	return evicted
}

// records lists the book, most recently updated first.
func (b *repBook) records() []RepRecord {
	out := make([]RepRecord, 0, b.order.Len())
	for el := b.order.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*repEntry)
		id, err := peer.Decode(e.agent)
		if err != nil {
			continue // not reached: every line is keyed by a checked peer id
		}
		out = append(out, RepRecord{Agent: id, OK: e.OK, Failed: e.Failed,
			Updated: time.UnixMilli(e.Updated), Score: Reputation(e.OK, e.Failed)})
	}
	return out
}

// decodeRep reads a stored line: the key must end in a peer id in its
// canonical form and the counts must not be negative.
func decodeRep(key string, v []byte) (repEntry, error) {
	agent := strings.TrimPrefix(key, repPrefix)
	id, err := peer.Decode(agent)
	if err != nil {
		return repEntry{}, fmt.Errorf("agent %q: %w", agent, err)
	}
	if id.String() != agent {
		return repEntry{}, fmt.Errorf("agent %q: not in canonical form %s", agent, id)
	}
	var r repRec
	if err := storeDec.Unmarshal(v, &r); err != nil {
		return repEntry{}, fmt.Errorf("decode: %w", err)
	}
	if r.OK < 0 || r.Failed < 0 {
		return repEntry{}, fmt.Errorf("counts ok %d failed %d, want >= 0", r.OK, r.Failed)
	}
	return repEntry{agent: agent, repRec: r}, nil
}

// Reputations returns the poster's reputation book, most recently updated
// agent first. It is the book as it is kept: with WithReputation the best
// policy scores with the replacement instead.
func (s *Service) Reputations() []RepRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rep.records()
}
