package descriptors

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// Query selects descriptors. Empty fields match everything; string matches
// are case-insensitive.
type Query struct {
	Kind       Kind          `json:"kind,omitempty"`
	Task       string        `json:"task,omitempty"`        // data/testset task, model task
	Skill      string        `json:"skill,omitempty"`       // model skill
	Modality   string        `json:"modality,omitempty"`    // data, model, testset
	Role       string        `json:"role,omitempty"`        // compute role ("mpvu" also matches testsets)
	Name       string        `json:"name,omitempty"`        // exact name
	MinSamples int64         `json:"min_samples,omitempty"` // data and testset
	MaxAge     time.Duration `json:"max_age,omitempty"`     // age of information: now - updated (data/testset) or - issued
	Owner      string        `json:"owner,omitempty"`       // peer ID
}

// Validate reports the first bad field of q.
func (q Query) Validate() error {
	if q.Kind != "" && !q.Kind.Valid() {
		return &FieldError{Field: "kind", Value: strconv.Quote(string(q.Kind)), Want: "data, model, compute or testset", Err: ErrUnknownKind}
	}
	if q.MinSamples < 0 {
		return &FieldError{Field: "min_samples", Value: strconv.FormatInt(q.MinSamples, 10), Want: ">= 0", Err: ErrInvalidField}
	}
	if q.MaxAge < 0 {
		return &FieldError{Field: "max_age", Value: q.MaxAge.String(), Want: ">= 0", Err: ErrInvalidField}
	}
	if q.Owner != "" {
		if _, err := peer.Decode(q.Owner); err != nil {
			return &FieldError{Field: "owner", Value: strconv.Quote(q.Owner), Want: "a peer ID", Err: ErrInvalidField}
		}
	}
	return nil
}

// FindOptions choose the sources of Find. If both are false both are used.
type FindOptions struct {
	UseGossip bool          // what gossip (and earlier look-ups) delivered to the local cache
	UseDHT    bool          // capability look-ups in the DHT now
	Timeout   time.Duration // bound on the DHT part (default: the service's find timeout)
	Limit     int           // providers per capability key (default 64)
}

// Result is one descriptor found, with where it came from and how fresh it is.
type Result struct {
	Desc     *Signed   `json:"descriptor"`
	Sources  []Source  `json:"sources"`
	Received time.Time `json:"received"`
	// AgeSeconds is the age of information: now minus the data's last
	// update (data, testset) or the issue time (model, compute).
	AgeSeconds float64 `json:"age_seconds"`
}

// UpdatedAt is when the described thing last changed: the data's last update
// for data and testsets, the issue time otherwise.
func (d *Descriptor) UpdatedAt() time.Time {
	switch {
	case d.Data != nil && !d.Data.Updated.IsZero():
		return d.Data.Updated
	case d.Testset != nil && !d.Testset.Updated.IsZero():
		return d.Testset.Updated
	}
	return d.Issued
}

// Matches reports whether d satisfies q at now. A nil or bodiless
// descriptor matches nothing.
func (q Query) Matches(d *Descriptor, now time.Time) bool {
	if d == nil {
		return false
	}
	eq := func(a, b string) bool {
		return b == "" || strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	if q.Kind != "" && d.Kind != q.Kind {
		return false
	}
	if q.Owner != "" && d.Owner != q.Owner {
		return false
	}
	if q.Name != "" && d.Name != q.Name {
		return false
	}
	if q.MaxAge > 0 && now.Sub(d.UpdatedAt()) > q.MaxAge {
		return false
	}
	var task, modality string
	var tasks, skills, roles []string
	samples := int64(-1)
	switch {
	case d.Kind == KindData && d.Data != nil:
		task, modality, samples = d.Data.Task, d.Data.Modality, d.Data.Samples
	case d.Kind == KindModel && d.Model != nil:
		task, modality, skills = d.Model.Task, d.Model.Modality, d.Model.Skills
	case d.Kind == KindCompute && d.Compute != nil:
		roles = d.Compute.Roles
		if len(roles) == 0 {
			roles = []string{"compute"}
		}
	case d.Kind == KindTestset && d.Testset != nil:
		task, modality, samples, tasks, roles = d.Testset.Task, d.Testset.Modality, d.Testset.Samples, d.Testset.Tasks, []string{"mpvu"}
	default:
		return false // not a valid descriptor: matches nothing
	}
	anyEq := func(list []string, want string) bool {
		return want == "" || slices.ContainsFunc(list, func(s string) bool { return eq(s, want) })
	}
	if q.Task != "" && !eq(task, q.Task) && !anyEq(tasks, q.Task) {
		return false
	}
	if q.Skill != "" && !anyEq(skills, q.Skill) {
		return false
	}
	if q.Role != "" && !anyEq(roles, q.Role) {
		return false
	}
	if !eq(modality, q.Modality) {
		return false
	}
	if q.MinSamples > 0 {
		if _, sealed := d.Sealed[string(d.Kind)+".samples"]; sealed || samples < q.MinSamples {
			return false
		}
	}
	return true
}

// lookupTags picks, per kind, the most specific capability tag for q.
func (q Query) lookupTags() []string {
	kinds := Kinds
	if q.Kind != "" {
		kinds = []Kind{q.Kind}
	}
	var out []string
	for _, k := range kinds {
		tag := Tag("", "kind", string(k))
		switch k {
		case KindData:
			if q.Task != "" {
				tag = Tag("data", "task", q.Task)
			} else if q.Modality != "" {
				tag = Tag("data", "modality", q.Modality)
			}
		case KindModel:
			if q.Skill != "" {
				tag = Tag("model", "skill", q.Skill)
			} else if q.Task != "" {
				tag = Tag("model", "task", q.Task)
			}
		case KindCompute:
			if q.Role != "" {
				tag = Tag("", "role", q.Role)
			}
		case KindTestset:
			if q.Task != "" {
				tag = Tag("testset", "task", q.Task)
			} else {
				tag = Tag("", "role", "mpvu")
			}
		}
		out = append(out, tag)
	}
	return out
}

// Find returns the live descriptors matching q, newest information first,
// merged from the local cache (what gossip delivered) and a capability
// look-up in the DHT (providers -> their signed index -> the matching
// records). Each result says which sources had it.
func (s *Service) Find(ctx context.Context, q Query, o FindOptions) ([]Result, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	s.ctr.finds.Add(1)
	if !o.UseGossip && !o.UseDHT {
		o.UseGossip, o.UseDHT = true, true
	}
	found := map[cid.Cid]*Result{}
	add := func(sd *Signed, srcs []Source, received time.Time) {
		r := found[sd.Slot]
		if r == nil || sd.Newer(r.Desc) {
			nr := &Result{Desc: sd, Received: received}
			if r != nil && r.Desc.ID == sd.ID {
				nr.Sources = r.Sources
			}
			found[sd.Slot], r = nr, nr
		}
		for _, src := range srcs {
			if !slices.Contains(r.Sources, src) {
				r.Sources = append(r.Sources, src)
			}
		}
	}
	now := s.now()
	if o.UseGossip {
		s.mu.Lock()
		for _, e := range s.cache {
			if e.s.Expired(now) || !q.Matches(&e.s.Descriptor, now) {
				continue
			}
			var srcs []Source
			for src := range e.sources {
				srcs = append(srcs, src)
			}
			sort.Slice(srcs, func(i, j int) bool { return srcs[i] < srcs[j] })
			add(e.s, srcs, e.received)
		}
		s.mu.Unlock()
	}
	if o.UseDHT && s.cfg.DHT {
		for _, sd := range s.findDHT(ctx, q, o) {
			if q.Matches(&sd.Descriptor, s.now()) {
				add(sd, []Source{SourceDHT}, s.now())
			}
		}
	}
	out := make([]Result, 0, len(found))
	now = s.now()
	for _, r := range found {
		r.AgeSeconds = now.Sub(r.Desc.UpdatedAt()).Seconds()
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].AgeSeconds != out[j].AgeSeconds {
			return out[i].AgeSeconds < out[j].AgeSeconds
		}
		return out[i].Desc.Slot.KeyString() < out[j].Desc.Slot.KeyString()
	})
	return out, ctx.Err()
}

// findDHT runs the capability look-ups and fetches the matching records.
func (s *Service) findDHT(ctx context.Context, q Query, o FindOptions) []*Signed {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = s.cfg.FindTimeout
	}
	limit := o.Limit
	if limit <= 0 {
		limit = 64
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tags := q.lookupTags()
	var mu sync.Mutex
	var out []*Signed
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	seen := map[peer.ID]bool{}
	fetchFrom := func(p peer.ID, tag string) {
		defer wg.Done()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-sem }()
		got := s.fetchOwner(ctx, p, q, tag)
		mu.Lock()
		out = append(out, got...)
		mu.Unlock()
	}
	if q.Owner != "" {
		p, _ := peer.Decode(q.Owner) // validated
		wg.Add(1)
		go fetchFrom(p, "")
		wg.Wait()
		return out
	}
	var twg sync.WaitGroup
	for _, tag := range tags {
		twg.Add(1)
		go func() {
			defer twg.Done()
			for ai := range s.rt.FindProvidersAsync(ctx, CapabilityKey(tag), limit) {
				mu.Lock()
				dup := seen[ai.ID]
				seen[ai.ID] = true
				mu.Unlock()
				if dup {
					continue
				}
				wg.Add(1)
				go fetchFrom(ai.ID, tag)
			}
		}()
	}
	twg.Wait()
	wg.Wait()
	return out
}

// fetchOwner reads p's index from the DHT and fetches the entries carrying
// tag (all entries if tag is ""), reusing cached versions that are current.
func (s *Service) fetchOwner(ctx context.Context, p peer.ID, q Query, tag string) []*Signed {
	if p == s.self {
		var out []*Signed
		for _, sd := range s.Own() {
			if tag == "" || slices.Contains(sd.Tags(), tag) {
				out = append(out, sd)
			}
		}
		return out
	}
	b, err := s.getBest(ctx, RecordKey(IndexSlot(p)))
	if err != nil {
		s.log.Debug("get index", "owner", p, "err", err)
		return nil
	}
	ix, err := OpenIndexAt(b, s.now())
	if err != nil || ix.Owner != p.String() {
		s.log.Debug("bad index", "owner", p, "err", err)
		return nil
	}
	var out []*Signed
	for _, e := range ix.Entries {
		if (q.Kind != "" && e.Kind != q.Kind) || (q.Name != "" && e.Name != q.Name) || (tag != "" && !slices.Contains(e.Tags, tag)) {
			continue
		}
		slot := SlotID(p, e.Kind, e.Name)
		s.mu.Lock()
		c := s.cache[slot]
		s.mu.Unlock()
		if c != nil && c.s.Seq >= e.Seq && !c.s.Expired(s.now()) {
			out = append(out, c.s)
			continue
		}
		v, err := s.getBest(ctx, RecordKey(slot))
		if err != nil {
			s.log.Debug("get descriptor record", "slot", slot, "err", err)
			continue
		}
		sd, err := OpenAt(v, s.now())
		if err != nil || !sd.Slot.Equals(slot) {
			continue
		}
		s.ingest(sd, SourceDHT)
		out = append(out, sd)
	}
	return out
}

// searchQuorum is how many peers must answer a value search before it
// stops. Every record is stored on the K=20 peers closest to its key; asking
// all of them costs a full Kademlia query per look-up, while a few answers,
// Select-ed for the newest, are almost always current (and gossip, merged
// by Find, carries updates faster anyway).
const searchQuorum = 4

// getBest streams a DHT value search and returns the best value seen when
// the search completes or ctx ends, whichever is first: under load a
// Kademlia query can outlast the caller's patience, and a validated value
// from the peers closest to the key is better than nothing.
func (s *Service) getBest(ctx context.Context, key string) ([]byte, error) {
	ch, err := s.rt.SearchValue(ctx, key, dht.Quorum(searchQuorum))
	if err != nil {
		return nil, err
	}
	var best []byte
	for v := range ch {
		best = v
	}
	if best == nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, routing.ErrNotFound
	}
	return best, nil
}
