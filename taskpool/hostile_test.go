package taskpool

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/internal/p2ptest"
)

func validTask(poster peer.ID) *Task {
	now := time.Now().UnixMilli()
	return &Task{ID: "t1", Pool: "p", Kind: "k", Tier: Gold, Policy: First, Poster: poster.String(),
		LeaseMs: 1000, Created: now, Deadline: now + 60000}
}

func TestTaskValidateTable(t *testing.T) {
	k := newKey(t)
	me, _ := peer.IDFromPrivateKey(k)
	cases := []struct {
		name string
		mut  func(*Task)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*Task) {}, ""},
		{"empty id", func(t *Task) { t.ID = "" }, "id:"},
		{"id with slash", func(t *Task) { t.ID = "a/b" }, "id:"},
		{"long id", func(t *Task) { t.ID = strings.Repeat("a", 65) }, "id:"},
		{"bad pool", func(t *Task) { t.Pool = "a b" }, "pool:"},
		{"no kind", func(t *Task) { t.Kind = "" }, "kind:"},
		{"oversized input", func(t *Task) { t.Input = make([]byte, MaxInlineInput+1) }, "input:"},
		{"max size input", func(t *Task) { t.Input = make([]byte, MaxInlineInput) }, ""},
		{"negative price", func(t *Task) { t.MaxPrice = -1 }, "max_price"},
		{"bad tier", func(t *Task) { t.Tier = "platinum" }, "tier:"},
		{"bad policy", func(t *Task) { t.Policy = "random" }, "policy:"},
		{"bad poster", func(t *Task) { t.Poster = "me" }, "poster:"},
		{"bad eligible", func(t *Task) { t.Eligible = []string{"x"} }, "eligible[0]"},
		{"tiny lease", func(t *Task) { t.LeaseMs = 1 }, "lease_ms"},
		{"deadline before created", func(t *Task) { t.Deadline = t.Created }, "deadline:"},
		{"huge window", func(t *Task) { t.BidWindowMs = 1 << 40 }, "bid_window_ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk := validTask(me)
			c.mut(tk)
			err := tk.Validate()
			if c.want == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
	for _, s := range []string{"gold", "SILVER", ""} {
		if _, err := ParseTier(s); err != nil {
			t.Errorf("ParseTier(%q): %v", s, err)
		}
	}
	if _, err := ParseTier("tin"); err == nil || !strings.Contains(err.Error(), "gold, silver or bronze") {
		t.Errorf("ParseTier(tin): %v", err)
	}
	if _, err := ParsePolicy("auction"); err == nil || !strings.Contains(err.Error(), "approve, first or best") {
		t.Errorf("ParsePolicy(auction): %v", err)
	}
}

func TestScoreTable(t *testing.T) {
	now := time.UnixMilli(1000)
	tk := &Task{MaxPrice: 100, Deadline: 11000}
	cases := []struct {
		name string
		bid  Bid
		rep  float64
		want float64
	}{
		{"free, instant, idle, perfect", Bid{Price: 0, ExpectedMs: 0, Load: 0}, 1, 1.0},
		{"max price, too slow, full, unknown", Bid{Price: 100, ExpectedMs: 20000, Load: 1}, 0.5, 0.05},
		{"half everything", Bid{Price: 50, ExpectedMs: 5000, Load: 0.5}, 0.5, 0.5},
	}
	for _, c := range cases {
		if got := Score(tk, &c.bid, c.rep, now, DefaultWeights); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("%s: score %v, want %v", c.name, got, c.want)
		}
	}
	if got := Score(&Task{Deadline: 11000}, &Bid{Price: 1}, 0.5, now, DefaultWeights); got != 0.4*0.5+0.3+0.2+0.05 {
		t.Errorf("no max price: %v", got)
	}
	if Reputation(0, 0) != 0.5 || Reputation(8, 0) != 0.9 {
		t.Errorf("reputation: %v %v", Reputation(0, 0), Reputation(8, 0))
	}
}

// TestOpenRejectsForgeries covers the decoders' checks one by one.
func TestOpenRejectsForgeries(t *testing.T) {
	k, other := newKey(t), newKey(t)
	me, _ := peer.IDFromPrivateKey(k)
	otherID, _ := peer.IDFromPrivateKey(other)
	tk := validTask(me)
	good, err := SealPosting(tk, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPosting(good); err != nil {
		t.Fatalf("good posting: %v", err)
	}
	// Signed by another key while naming me as poster.
	forged, _ := seal(postingRec{tk}, other)
	if _, err := OpenPosting(forged); err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("forged posting: %v", err)
	}
	// Tampered payload.
	bad := append([]byte(nil), good...)
	bad[len(bad)-70] ^= 1
	if _, err := OpenPosting(bad); err == nil {
		t.Fatal("tampered posting accepted")
	}
	// A bid envelope presented as a posting: wrong domain.
	b := &Bid{TaskID: "t1", Bidder: me.String(), Price: 1, Time: 1}
	benv, _ := SealBid(b, k)
	if _, err := OpenPosting(benv); err == nil {
		t.Fatal("bid accepted as posting")
	}
	if _, err := OpenBid(benv); err != nil {
		t.Fatalf("good bid: %v", err)
	}
	fb, _ := seal(bidRec{b}, other)
	if _, err := OpenBid(fb); err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("forged bid: %v", err)
	}
	// Assignment signed by someone other than the poster it names.
	a := &Assignment{TaskID: "t1", Poster: me.String(), Agent: otherID.String(), Epoch: 1}
	aenv, _ := seal(assignmentRec{a}, other)
	if _, err := OpenAssignment(aenv); err == nil || !strings.Contains(err.Error(), "signed by") {
		t.Fatalf("assignment by non-poster: %v", err)
	}
	// Oversized envelope.
	if _, err := OpenPosting(make([]byte, MaxPostingBytes+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized posting: %v", err)
	}
	// Oversized output in a result.
	r := &Result{TaskID: "t1", Poster: me.String(), Agent: me.String(), Epoch: 1, Output: make([]byte, 2048)}
	renv, _ := seal(resultRec{r}, k)
	if _, err := OpenResult(renv, 1024); err == nil || !strings.Contains(err.Error(), "output") {
		t.Fatalf("oversized result: %v", err)
	}
	// Posting with an oversized input cannot even be sealed.
	big := validTask(me)
	big.Input = make([]byte, MaxInlineInput+1)
	if _, err := SealPosting(big, k); err == nil {
		t.Fatal("oversized input sealed")
	}
}

// TestValidatorRules drives the gossip validator directly.
func TestValidatorRules(t *testing.T) {
	nw := p2ptest.New(t, 1, p2ptest.WithPubSub())
	s := newSvc(t, nw.Peers[0], memStore(), WithPostingRate(1, 4))
	k := newKey(t)
	poster, _ := peer.IDFromPrivateKey(k)
	now := time.Now()
	base := validTask(poster) // one Created time, so identical postings are identical
	mk := func(mut func(*Task)) []byte {
		tk := *base
		mut(&tk)
		env, err := seal(postingRec{&tk}, k)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	cases := []struct {
		name string
		from peer.ID
		data []byte
		want pubsub.ValidationResult
	}{
		{"valid", poster, mk(func(*Task) {}), pubsub.ValidationAccept},
		{"same again", poster, mk(func(*Task) {}), pubsub.ValidationIgnore},
		{"same id different content", poster, mk(func(t *Task) { t.Kind = "other" }), pubsub.ValidationReject},
		{"repost supersedes", poster, mk(func(t *Task) { t.Repost = 1 }), pubsub.ValidationAccept},
		// The rate limit (burst 4) is now spent for this poster.
		{"flood", poster, mk(func(t *Task) { t.ID = "t2" }), pubsub.ValidationReject},
		{"relayed as someone else's message", nw.Peers[0].Host.ID(), mk(func(t *Task) { t.ID = "t3" }), pubsub.ValidationReject},
		{"garbage", nw.Peers[0].Host.ID(), []byte("hello"), pubsub.ValidationReject},
	}
	for _, c := range cases {
		res, _ := s.validatePosting("p", c.from, c.data, now)
		if res != c.want {
			t.Errorf("%s: %v, want %v", c.name, res, c.want)
		}
	}
	k2 := newKey(t)
	p2, _ := peer.IDFromPrivateKey(k2)
	tk := validTask(p2)
	tk.Pool = "elsewhere"
	env, _ := seal(postingRec{tk}, k2)
	if res, _ := s.validatePosting("p", p2, env, now); res != pubsub.ValidationReject {
		t.Errorf("wrong pool: %v", res)
	}
	tk = validTask(p2)
	tk.Deadline = now.UnixMilli() - 1
	tk.Created = tk.Deadline - 10
	env, _ = seal(postingRec{tk}, k2)
	if res, _ := s.validatePosting("p", p2, env, now); res != pubsub.ValidationIgnore {
		t.Errorf("stale: %v", res)
	}
}

// TestHostileGossipPeer: a peer that publishes forged, malformed and flood
// postings on the topic gets none of them to the agent and loses score.
func TestHostileGossipPeer(t *testing.T) {
	nw := p2ptest.New(t, 3, p2ptest.WithPubSub())
	hub := newSvc(t, nw.Peers[0], memStore(), WithPostingRate(5, 20))
	agentSvc := newSvc(t, nw.Peers[1], memStore(), WithPostingRate(5, 20))
	_ = hub
	if err := hub.JoinPool("p"); err != nil {
		t.Fatal(err)
	}
	got, err := agentSvc.Postings(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	// The hostile peer joins without our validator.
	evil := nw.Peers[2]
	topic, err := evil.PubSub.Join(TopicName("p"))
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.Eventually(t, 10*time.Second, "hostile peer in topic", func() bool {
		return len(topic.ListPeers()) >= 1
	})
	ctx := context.Background()
	evilKey := evil.Host.Peerstore().PrivKey(evil.Host.ID())
	other := newKey(t)
	otherID, _ := peer.IDFromPrivateKey(other)
	floodStart := time.Now()
	// Flood first: 200 valid postings at once, ten times the burst.
	for i := 0; i < 200; i++ {
		tk := validTask(evil.Host.ID())
		tk.ID = fmt.Sprintf("flood-%d", i)
		env, _ := seal(postingRec{tk}, evilKey)
		_ = topic.Publish(ctx, env)
	}
	// Forged: signed by another key, published by the hostile peer.
	forged, _ := seal(postingRec{validTask(otherID)}, other)
	_ = topic.Publish(ctx, forged)
	_ = topic.Publish(ctx, []byte("not a posting"))
	big := validTask(evil.Host.ID())
	big.Input = make([]byte, MaxInlineInput+10)
	bigEnv, _ := seal(postingRec{big}, evilKey)
	_ = topic.Publish(ctx, bigEnv)
	p2ptest.Eventually(t, 15*time.Second, "hostile peer's score drops below zero at the hub", func() bool {
		return nw.Peers[0].Score(evil.Host.ID()) < 0
	})
	// What reached the agent: only valid postings, at most the burst.
	n := 0
	timeout := time.After(time.Second)
loop:
	for {
		select {
		case tk := <-got:
			if tk.Poster != evil.Host.ID().String() || len(tk.Input) > MaxInlineInput {
				t.Fatalf("agent got a forged/oversized posting: %+v", tk.ID)
			}
			n++
		case <-timeout:
			break loop
		}
	}
	// The bucket: a burst of 20, refilled at 5/s while the test runs.
	if allowed := 20 + int(5*time.Since(floodStart).Seconds()) + 1; n > allowed {
		t.Fatalf("agent got %d flood postings, want at most %d (burst 20 + 5/s)", n, allowed)
	}
	// A few rejects push the peer under the graylist threshold, after
	// which the hub drops its messages unvalidated.
	if st := hub.Stats(); st.PostingsRejected < 1 {
		t.Fatalf("hub rejected only %d postings: %+v", st.PostingsRejected, st)
	}
	t.Logf("agent got %d postings; hub stats %+v; hostile score %.1f", n, hub.Stats(), nw.Peers[0].Score(evil.Host.ID()))
}

// TestBadStreamInput: forged bids, offers from non-posters, results for
// tasks never assigned.
func TestBadStreamInput(t *testing.T) {
	nw, ss := services(t, 3)
	poster, evil, agent := ss[0], ss[1], ss[2]
	if _, err := agent.RunAgent(AgentConfig{Pool: "x", Handler: func(ctx context.Context, tk Task) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	waitTopicPeers(t, poster, "x", 1)
	tk, err := poster.Post(context.Background(), TaskSpec{Pool: "x", Kind: "k", Policy: Approve})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	posterID := nw.Peers[0].Host.ID()
	agentID := nw.Peers[2].Host.ID()
	other := newKey(t)
	// A bid signed by another key, sent by evil.
	b := &Bid{TaskID: tk.ID, Bidder: agentID.String(), Price: 1, Time: 1}
	forgedBid, _ := seal(bidRec{b}, other)
	resp, err := evil.call(ctx, posterID, &wireMsg{Op: opBid, Env: forgedBid})
	if err != nil || resp.Code != codeRejected {
		t.Fatalf("forged bid: %+v %v", resp, err)
	}
	// Evil's own valid bid naming the agent as bidder.
	b2 := &Bid{TaskID: tk.ID, Bidder: agentID.String(), Price: 1, Time: 1}
	env2, _ := seal(bidRec{b2}, evil.key)
	resp, _ = evil.call(ctx, posterID, &wireMsg{Op: opBid, Env: env2})
	if resp.Code != codeRejected {
		t.Fatalf("bid for someone else: %+v", resp)
	}
	// Result for a task never assigned to evil.
	r := &Result{TaskID: tk.ID, Poster: posterID.String(), Agent: evil.self.String(), Epoch: 1, OK: true, Time: 1}
	renv, _ := seal(resultRec{r}, evil.key)
	resp, _ = evil.call(ctx, posterID, &wireMsg{Op: opResult, Env: renv})
	if resp.Code != codeStale {
		t.Fatalf("result for unassigned task: %+v", resp)
	}
	r.TaskID = "never-posted"
	renv, _ = seal(resultRec{r}, evil.key)
	resp, _ = evil.call(ctx, posterID, &wireMsg{Op: opResult, Env: renv})
	if resp.Code != codeNotFound {
		t.Fatalf("result for unknown task: %+v", resp)
	}
	// Evil offers the agent the poster's task, signed by evil: rejected.
	p2ptest.Eventually(t, 10*time.Second, "agent bid", func() bool {
		st, _ := poster.Status(tk.ID)
		return len(st.Bids) == 1
	})
	p2ptest.Connect(t, nw.Peers[1].Host, nw.Peers[2].Host)
	a := &Assignment{TaskID: tk.ID, Poster: posterID.String(), Agent: agentID.String(), Epoch: 1}
	aenv, _ := seal(assignmentRec{a}, evil.key)
	resp, _ = evil.call(ctx, agentID, &wireMsg{Op: opOffer, Env: aenv})
	if resp.Code != codeRejected {
		t.Fatalf("offer signed by non-poster: %+v", resp)
	}
	// Correctly self-signed, but evil is not the poster of that task.
	a.Poster = evil.self.String()
	aenv, _ = seal(assignmentRec{a}, evil.key)
	resp, _ = evil.call(ctx, agentID, &wireMsg{Op: opOffer, Env: aenv})
	if resp.Code != codeDeclined {
		t.Fatalf("offer from a non-poster: %+v", resp)
	}
	if agentsOf(agent)[0].Active() != 0 {
		t.Fatal("agent runs a task nobody legitimately assigned")
	}
	// Unknown op and garbage.
	resp, _ = evil.call(ctx, posterID, &wireMsg{Op: "steal"})
	if resp.Code != codeRejected {
		t.Fatalf("unknown op: %+v", resp)
	}
	// The real poster approves: works.
	if err := poster.Approve(ctx, tk.ID, agentID); err != nil {
		t.Fatal(err)
	}
	_ = crypto.Ed25519
}
