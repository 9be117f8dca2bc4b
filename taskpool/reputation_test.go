package taskpool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/p2ptest"
	"github.com/daitn/daitn/internal/store"
)

// bookOrder lists the book's agents, least recently updated first.
func bookOrder(b *repBook) []string {
	var out []string
	for el := b.order.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*repEntry).agent)
	}
	return out
}

// TestRepBookRules: the planner's counting, update order and bound, with
// the evictions each change asks the store to make. All steps happen in one
// millisecond; their Updated stamps must still follow their order.
func TestRepBookRules(t *testing.T) {
	type step struct {
		agent string
		ok    bool
		evict []string // what this step drops
	}
	cases := []struct {
		name  string
		max   int
		steps []step
		order []string          // least recently updated first
		count map[string][2]int // agent → ok, failed
	}{
		{"counts", 10, []step{{"a", true, nil}, {"a", false, nil}, {"a", true, nil}, {"b", false, nil}},
			[]string{"a", "b"}, map[string][2]int{"a": {2, 1}, "b": {0, 1}, "c": {0, 0}}},
		{"an update moves to the back", 10, []step{{"a", true, nil}, {"b", true, nil}, {"a", false, nil}},
			[]string{"b", "a"}, map[string][2]int{"a": {1, 1}, "b": {1, 0}}},
		{"full: the least recently updated goes", 2,
			[]step{{"a", true, nil}, {"b", true, nil}, {"c", false, []string{"a"}}, {"d", false, []string{"b"}}},
			[]string{"c", "d"}, map[string][2]int{"a": {0, 0}, "b": {0, 0}, "c": {0, 1}, "d": {0, 1}}},
		{"full: updating a known agent evicts nobody", 2,
			[]step{{"a", true, nil}, {"b", true, nil}, {"a", true, nil}, {"c", true, []string{"b"}}},
			[]string{"a", "c"}, map[string][2]int{"a": {2, 0}, "b": {0, 0}, "c": {1, 0}}},
		{"a bound of one", 1, []step{{"a", false, nil}, {"b", true, []string{"a"}}, {"a", true, []string{"b"}}},
			[]string{"a"}, map[string][2]int{"a": {1, 0}, "b": {0, 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newRepBook(tc.max)
			now := time.UnixMilli(1_700_000_000_000)
			var last int64
			for i, st := range tc.steps {
				c := b.note(st.agent, st.ok, now)
				if c.entry.Updated <= last || c.entry.Updated < now.UnixMilli() {
					t.Fatalf("step %d: updated %d after %d at now %d", i, c.entry.Updated, last, now.UnixMilli())
				}
				last = c.entry.Updated
				if !reflect.DeepEqual(c.evict, st.evict) {
					t.Fatalf("step %d (%s): evicts %v, want %v", i, st.agent, c.evict, st.evict)
				}
				ops := c.ops()
				if ops[0].key != repKey(st.agent) || ops[0].del || len(ops) != 1+len(st.evict) {
					t.Fatalf("step %d: ops %+v", i, ops)
				}
				for j, a := range st.evict {
					if ops[1+j].key != repKey(a) || !ops[1+j].del {
						t.Fatalf("step %d: op %d is %+v, want delete of %s", i, 1+j, ops[1+j], a)
					}
				}
				b.apply(c)
				if b.len() > tc.max {
					t.Fatalf("step %d: %d agents, bound %d", i, b.len(), tc.max)
				}
			}
			if got := bookOrder(b); !reflect.DeepEqual(got, tc.order) {
				t.Fatalf("order %v, want %v", got, tc.order)
			}
			for a, want := range tc.count {
				if ok, failed := b.counts(a); ok != want[0] || failed != want[1] {
					t.Fatalf("%s: ok %d failed %d, want %v", a, ok, failed, want)
				}
			}
		})
	}
}

// TestRepBookLoad: stored lines come back in update order, ties by agent,
// and lines beyond the bound are the oldest and are reported for deletion.
func TestRepBookLoad(t *testing.T) {
	lines := []repEntry{
		{"c", repRec{OK: 1, Updated: 30}},
		{"a", repRec{OK: 2, Updated: 10}},
		{"e", repRec{Failed: 1, Updated: 20}},
		{"b", repRec{Failed: 3, Updated: 10}},
	}
	b := newRepBook(3)
	evicted := b.load(append([]repEntry(nil), lines...))
	if !reflect.DeepEqual(evicted, []string{"a"}) {
		t.Fatalf("evicted %v, want [a]", evicted)
	}
	if got, want := bookOrder(b), []string{"b", "e", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if ok, failed := b.counts("b"); ok != 0 || failed != 3 {
		t.Fatalf("b: %d/%d", ok, failed)
	}
	// The next update is stamped after the latest loaded one, even with
	// the clock behind it.
	if c := b.note("a", true, time.UnixMilli(5)); c.entry.Updated != 31 {
		t.Fatalf("update after load stamped %d, want 31", c.entry.Updated)
	}
}

// recordOutcome runs an outcome through the poster's result path: a task
// assigned to agent at epoch 1, then the agent's result for it.
func recordOutcome(t *testing.T, s *Service, agent peer.ID, ok bool) {
	t.Helper()
	id := NewTaskID()
	far := time.Now().Add(time.Hour).UnixMilli()
	s.mu.Lock()
	s.posted[id] = &posted{Task: Task{ID: id, Pool: "rep", Kind: "k", Poster: s.self.String(), Deadline: far},
		State: StateAssigned, Holder: agent.String(), Epoch: 1, LeaseUntil: far}
	s.mu.Unlock()
	r := &Result{TaskID: id, Poster: s.self.String(), Agent: agent.String(), Epoch: 1, OK: ok}
	if resp := s.applyResult(r, nil); resp.Code != codeOK {
		t.Fatalf("apply result of %s: %+v", agent, resp)
	}
}

func newPeerID(t *testing.T) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// storedRep returns the reputation records in the store, by agent.
func storedRep(t *testing.T, d ds.Datastore) map[string]repRec {
	t.Helper()
	res, err := d.Query(context.Background(), query.Query{Prefix: repPrefix})
	if err != nil {
		t.Fatal(err)
	}
	es, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]repRec{}
	for _, e := range es {
		r, err := decodeRep(e.Key, e.Value)
		if err != nil {
			t.Fatalf("stored %s: %v", e.Key, err)
		}
		out[r.agent] = r.repRec
	}
	return out
}

// TestReputationSurvivesRestart: one agent fails the poster's tasks and
// another finishes them, through the real flow; the poster restarts on the
// same store, still knows both, and the best policy picks the good agent
// although identical bids would otherwise go to the failing one.
func TestReputationSurvivesRestart(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	ph, pps := keyedHost(t, key, "")
	addr := ph.Addrs()[0].String()
	pstore, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	poster, err := New(context.Background(), ph, pps, pstore, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { poster.Close(); ph.Close(); pstore.Close() }) // if a check fails before the restart

	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	// Ties go to the smaller peer id: make that one the failing agent, so
	// only a remembered record can make the other win.
	bad, good := nw.Peers[0], nw.Peers[1]
	if good.Host.ID() < bad.Host.ID() {
		bad, good = good, bad
	}
	for _, p := range []*p2ptest.Peer{bad, good} {
		s := newSvc(t, p, memStore())
		fail := p == bad
		if _, err := s.RunAgent(AgentConfig{Pool: "rep", Price: 1, Expected: time.Second,
			Handler: func(ctx context.Context, tk Task) ([]byte, error) {
				if fail {
					return nil, errors.New("refused")
				}
				return []byte("ok"), nil
			}}); err != nil {
			t.Fatal(err)
		}
		p2ptest.Connect(t, p.Host, ph)
	}
	waitTopicPeers(t, poster, "rep", 2)
	for _, job := range []struct {
		to   *p2ptest.Peer
		want State
	}{{bad, StateFailed}, {good, StateDone}, {bad, StateFailed}} {
		tk, err := poster.Post(context.Background(), TaskSpec{Pool: "rep", Kind: "k",
			Eligible: []peer.ID{job.to.Host.ID()}, Deadline: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := poster.WaitResult(ctx, tk.ID)
		cancel()
		if err != nil || st.State != job.want {
			t.Fatalf("task for %s: %v %v, want %s", job.to.Host.ID(), st.State, err, job.want)
		}
	}
	before := poster.Reputations()
	counts := func(recs []RepRecord) map[peer.ID][2]int {
		m := map[peer.ID][2]int{}
		for _, r := range recs {
			m[r.Agent] = [2]int{r.OK, r.Failed}
		}
		return m
	}
	want := map[peer.ID][2]int{bad.Host.ID(): {0, 2}, good.Host.ID(): {1, 0}}
	if got := counts(before); !reflect.DeepEqual(got, want) {
		t.Fatalf("book before restart %v, want %v", got, want)
	}
	if before[0].Agent != bad.Host.ID() || before[0].Score != Reputation(0, 2) {
		t.Fatalf("most recent line %+v, want the failing agent at %v", before[0], Reputation(0, 2))
	}

	poster.Close()
	ph.Close()
	pstore.Close()
	ph2, pps2 := keyedHost(t, key, addr)
	pstore2, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	poster2, err := New(context.Background(), ph2, pps2, pstore2, testOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { poster2.Close(); ph2.Close(); pstore2.Close() })
	if after := poster2.Reputations(); !reflect.DeepEqual(after, before) {
		t.Fatalf("book after restart\n%+v\nwant\n%+v", after, before)
	}

	for _, p := range []*p2ptest.Peer{bad, good} {
		p2ptest.Connect(t, p.Host, ph2)
	}
	waitTopicPeers(t, poster2, "rep", 2)
	tk, err := poster2.Post(context.Background(), TaskSpec{Pool: "rep", Kind: "k", Policy: Best,
		MaxPrice: 10, Deadline: time.Minute, BidWindow: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := poster2.WaitResult(ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.LastRanked) != 2 {
		t.Fatalf("ranked %d bids, want both agents': %+v", len(st.LastRanked), st.LastRanked)
	}
	if st.State != StateDone || st.Result.Agent != good.Host.ID().String() {
		t.Fatalf("best task %s by %s, want done by the good agent %s", st.State, st.Holder, good.Host.ID())
	}
	// The bids are alike; the scores differ by the reputation term alone.
	gap := st.LastRanked[0].Score - st.LastRanked[1].Score
	wantGap := DefaultWeights.Reputation * (Reputation(1, 0) - Reputation(0, 2))
	if math.Abs(gap-wantGap) > 1e-9 {
		t.Fatalf("score gap %v, want the reputation term's %v: %+v", gap, wantGap, st.LastRanked)
	}
}

// TestReputationBound: past the limit the least recently updated agents
// leave memory and store; a restart with a lower limit drops the oldest.
func TestReputationBound(t *testing.T) {
	nw := p2ptest.New(t, 1, p2ptest.WithPubSub())
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	open := func(limit int) *Service {
		s, err := New(context.Background(), nw.Peers[0].Host, nw.Peers[0].PubSub, st,
			testOpts(WithReputationLimit(limit))...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	agents := make([]peer.ID, 5)
	for i := range agents {
		agents[i] = newPeerID(t)
	}
	agentsOf := func(recs []RepRecord) []peer.ID {
		var out []peer.ID
		for _, r := range recs {
			out = append(out, r.Agent)
		}
		return out
	}

	s := open(3)
	recordOutcome(t, s, agents[0], true)
	recordOutcome(t, s, agents[1], false)
	recordOutcome(t, s, agents[2], true)
	recordOutcome(t, s, agents[0], true) // agent 0 is now the most recent
	recordOutcome(t, s, agents[3], false)
	recordOutcome(t, s, agents[4], false)
	// Agent 1, then agent 2 were the least recently updated.
	want := []peer.ID{agents[4], agents[3], agents[0]}
	if got := agentsOf(s.Reputations()); !reflect.DeepEqual(got, want) {
		t.Fatalf("book %v, want %v", got, want)
	}
	stored := storedRep(t, st)
	if len(stored) != 3 || stored[agents[0].String()].OK != 2 {
		t.Fatalf("store holds %+v, want agents 4, 3, 0 with agent 0 at 2 ok", stored)
	}
	for _, gone := range agents[1:3] {
		if _, ok := stored[gone.String()]; ok {
			t.Fatalf("evicted agent %s still in the store", gone)
		}
	}
	s.Close()

	s = open(3)
	if got := agentsOf(s.Reputations()); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart %v, want %v", got, want)
	}
	s.Close()

	s = open(2)
	defer s.Close()
	if got := agentsOf(s.Reputations()); !reflect.DeepEqual(got, want[:2]) {
		t.Fatalf("after restart with limit 2: %v, want %v", got, want[:2])
	}
	if stored := storedRep(t, st); len(stored) != 2 {
		t.Fatalf("store holds %d records after restart with limit 2, want 2", len(stored))
	}
}

// syncBuffer is a log sink the service's goroutines may write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReputationCorruptRecordSkipped: an unreadable reputation record is
// logged with its key and skipped; the service starts with the rest.
func TestReputationCorruptRecordSkipped(t *testing.T) {
	nw := p2ptest.New(t, 1, p2ptest.WithPubSub())
	goodID, otherID := newPeerID(t), newPeerID(t)
	enc := func(v any) []byte {
		b, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := enc(&repRec{OK: 4, Failed: 1, Updated: time.Now().UnixMilli()})
	cases := []struct {
		name string
		key  ds.Key
		val  []byte
	}{
		{"garbage", repKey(otherID.String()), []byte{0xff, 0x00, 0x13, 0x37}},
		{"empty", repKey(otherID.String()), []byte{}},
		{"truncated", repKey(otherID.String()), valid[:len(valid)-3]},
		{"trailing bytes", repKey(otherID.String()), append(append([]byte(nil), valid...), 0x00)},
		{"not a record", repKey(otherID.String()), enc("hello")},
		{"negative count", repKey(otherID.String()), enc(&repRec{OK: -1, Failed: 2})},
		{"key not a peer id", ds.NewKey(repPrefix + "not-a-peer"), valid},
		{"key not canonical", ds.NewKey(repPrefix + peer.ToCid(otherID).String()), valid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := memStore()
			ctx := context.Background()
			if err := d.Put(ctx, repKey(goodID.String()), valid); err != nil {
				t.Fatal(err)
			}
			if err := d.Put(ctx, tc.key, tc.val); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			s, err := New(ctx, nw.Peers[0].Host, nw.Peers[0].PubSub, d,
				testOpts(WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))...)
			if err != nil {
				t.Fatalf("service did not start: %v", err)
			}
			defer s.Close()
			recs := s.Reputations()
			if len(recs) != 1 || recs[0].Agent != goodID || recs[0].OK != 4 || recs[0].Failed != 1 {
				t.Fatalf("book %+v, want only the good record", recs)
			}
			var warned bool
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "reputation record") &&
					strings.Contains(line, tc.key.String()) {
					warned = true
				}
			}
			if !warned {
				t.Fatalf("no warning naming %s in the log:\n%s", tc.key, logs.String())
			}
			// The agent's next outcome replaces what could not be read.
			if tc.key == repKey(otherID.String()) {
				recordOutcome(t, s, otherID, false)
				if r := storedRep(t, d)[otherID.String()]; r.OK != 0 || r.Failed != 1 {
					t.Fatalf("record after a new outcome: %+v, want 0 ok 1 failed", r)
				}
			}
		})
	}
}

// FuzzDecodeRep: a stored reputation record is accepted only with
// non-negative counts under a canonical peer id, and what is accepted
// writes back to the bytes that decode to the same line.
func FuzzDecodeRep(f *testing.F) {
	_, id := fuzzKey(f)
	good, _ := encMode.Marshal(&repRec{OK: 3, Failed: 1, Updated: 1_700_000_000_000})
	f.Add(id.String(), good)
	f.Add(id.String(), []byte{})
	f.Add("not-a-peer", good)
	f.Fuzz(func(t *testing.T, agent string, v []byte) {
		e, err := decodeRep(repPrefix+agent, v)
		if err != nil {
			return
		}
		if e.OK < 0 || e.Failed < 0 {
			t.Fatalf("accepted negative counts %+v", e)
		}
		if id, err := peer.Decode(e.agent); err != nil || id.String() != e.agent || e.agent != agent {
			t.Fatalf("accepted agent %q (from %q): %v", e.agent, agent, err)
		}
		op := repChange{entry: e}.ops()[0]
		back, err := decodeRep(op.key.String(), op.val)
		if err != nil || back != e {
			t.Fatalf("line %+v wrote back as %+v, %v", e, back, err)
		}
	})
}
