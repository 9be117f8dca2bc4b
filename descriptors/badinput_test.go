package descriptors

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	dsq "github.com/ipfs/go-datastore/query"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/record"
	recpb "github.com/libp2p/go-libp2p/core/record/pb"
	"google.golang.org/protobuf/proto"

	"github.com/daitn/daitn/internal/p2ptest"
)

// sealRaw signs arbitrary payload bytes as kind k's envelope, bypassing
// Sign's checks (what an attacker or a buggy peer can produce).
func sealRaw(t testing.TB, priv crypto.PrivKey, k Kind, payload []byte) []byte {
	t.Helper()
	env, err := record.Seal(&payloadRecord{kind: k, raw: payload}, priv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reframe(t testing.TB, raw []byte, mod func(*recpb.Envelope)) []byte {
	t.Helper()
	var pe recpb.Envelope
	if err := proto.Unmarshal(raw, &pe); err != nil {
		t.Fatal(err)
	}
	mod(&pe)
	b, err := proto.Marshal(&pe)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type badCase struct {
	name    string
	raw     []byte
	wantErr error
	mention string // the error must name this
}

// badInputs builds one of every kind of bad input the issue lists.
func badInputs(t testing.TB) (priv crypto.PrivKey, good *Signed, cases []badCase) {
	priv = newKey(t)
	other := newKey(t)
	now := time.Now()
	good, err := Sign(priv, sample(KindData, "shard"))
	if err != nil {
		t.Fatal(err)
	}
	otherID := mustID(t, other)
	payload := func(mod func(*Descriptor)) []byte {
		d := good.Descriptor
		dd := *d.Data
		d.Data = &dd
		mod(&d)
		b, err := Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	junk := make([]byte, 300)
	_, _ = rand.Read(junk)
	cases = []badCase{
		{"bad signature", reframe(t, good.Raw, func(e *recpb.Envelope) { e.Signature[3] ^= 0xff }), ErrBadSignature, "signature"},
		{"tampered payload", reframe(t, good.Raw, func(e *recpb.Envelope) {
			e.Payload = bytes.Replace(e.Payload, []byte("digits"), []byte("digitz"), 1)
		}), ErrBadSignature, "signature"},
		{"payload swapped between kinds", reframe(t, good.Raw, func(e *recpb.Envelope) { e.PayloadType = PayloadType(KindModel) }), ErrKindMismatch, "signed as a data descriptor"},
		{"data payload signed as model", sealRaw(t, priv, KindModel, good.Raw[0:0:0]), ErrMalformed, "CBOR"},
		{"header kind differs from envelope", sealRaw(t, priv, KindModel, payload(func(d *Descriptor) {})), ErrKindMismatch, `"data" inside a model envelope`},
		{"owner mismatch", sealRaw(t, priv, KindData, payload(func(d *Descriptor) { d.Owner = otherID })), ErrOwnerMismatch, otherID},
		{"expired", sealRaw(t, priv, KindData, payload(func(d *Descriptor) {
			d.Issued = now.Add(-2 * time.Hour).Truncate(time.Second)
			d.Expires = now.Add(-time.Hour).Truncate(time.Second)
		})), ErrExpired, "expired at"},
		{"oversized", make([]byte, MaxEnvelopeSize+1), ErrOversized, "limit"},
		{"truncated", good.Raw[:len(good.Raw)/2], ErrMalformed, "truncated"},
		{"random bytes", junk, ErrMalformed, "envelope"},
		{"empty", nil, ErrMalformed, "empty"},
		{"unknown kind", reframe(t, good.Raw, func(e *recpb.Envelope) { e.PayloadType = []byte("/daitn/descriptor/weights/1") }), ErrUnknownKind, "weights"},
		{"missing required field", sealRaw(t, priv, KindData, payload(func(d *Descriptor) { d.Data.Task = "" })), ErrMissingField, "data.task"},
		{"missing body", sealRaw(t, priv, KindData, payload(func(d *Descriptor) { d.Data = nil })), ErrMissingField, "data"},
		{"non-canonical payload", sealRaw(t, priv, KindData, append(payload(func(d *Descriptor) {}), 0x00)), ErrMalformed, "CBOR"},
	}
	return priv, good, cases
}

func TestOpenRejectsBadInput(t *testing.T) {
	_, good, cases := badInputs(t)
	v := RecordValidator{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.raw)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Open: err = %v, want %v", err, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("Open: error %q does not name %q", err, c.mention)
			}
			if err := v.Validate(good.Key(), c.raw); err == nil {
				t.Fatal("DHT validator accepted it")
			}
			// Select never picks a bad value over a good one.
			if i, err := v.Select(good.Key(), [][]byte{c.raw, good.Raw}); err != nil || i != 1 {
				t.Fatalf("Select = %d, %v", i, err)
			}
		})
	}
}

// TestServiceIgnoresBadInput feeds every bad input, plus a replay of an older
// sequence, to a live service through its gossip validator and checks the
// verdict (Reject for provable misbehaviour, Ignore for stale) and that the
// cache and the store are unchanged.
func TestServiceIgnoresBadInput(t *testing.T) {
	nw := p2ptest.New(t, 1, p2ptest.WithPubSub())
	s := startAll(t, nw)[0]
	ctx := context.Background()
	priv, good, cases := badInputs(t)
	deliver := func(raw []byte) pubsub.ValidationResult {
		m := &pubsub.Message{Message: &pb.Message{Data: raw}, ReceivedFrom: "relay"}
		return s.validateMsg(ctx, "relay", m)
	}
	storeKeys := func() int {
		res, err := s.store.Query(ctx, dsq.Query{KeysOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		all, _ := res.Rest()
		return len(all)
	}
	before, beforeKeys := len(s.Snapshot()), storeKeys()
	for _, c := range cases {
		want := pubsub.ValidationReject
		if errors.Is(c.wantErr, ErrExpired) {
			want = pubsub.ValidationIgnore
		}
		if got := deliver(c.raw); got != want {
			t.Errorf("%s: verdict %v, want %v", c.name, got, want)
		}
	}
	if len(s.Snapshot()) != before || storeKeys() != beforeKeys {
		t.Fatal("bad input changed the cache or store")
	}
	// Replayed older sequence: v1 is accepted while new, then v2 replaces
	// it, then v1 again is ignored and changes nothing.
	if got := deliver(good.Raw); got != pubsub.ValidationAccept {
		t.Fatalf("fresh v1: %v", got)
	}
	s.ingest(good, SourceGossip)
	if got := deliver(good.Raw); got != pubsub.ValidationIgnore {
		t.Fatalf("duplicate v1: %v", got)
	}
	d2 := good.Descriptor
	d2.Seq = 2
	d2.Issued, d2.Expires = time.Time{}, time.Time{}
	v2, err := Sign(priv, &d2)
	if err != nil {
		t.Fatal(err)
	}
	if got := deliver(v2.Raw); got != pubsub.ValidationAccept {
		t.Fatalf("v2: %v", got)
	}
	s.ingest(v2, SourceGossip)
	if got := deliver(good.Raw); got != pubsub.ValidationIgnore {
		t.Fatalf("replayed v1: %v", got)
	}
	if s.ingest(good, SourceGossip) {
		t.Fatal("ingest let v1 replace v2")
	}
	if got, _ := s.Get(ctx, good.Slot); got.Seq != 2 {
		t.Fatalf("after replay the node has seq %d", got.Seq)
	}
	if i, err := (RecordValidator{}).Select(good.Key(), [][]byte{good.Raw, v2.Raw, good.Raw}); err != nil || i != 1 {
		t.Fatalf("Select(v1, v2, v1) = %d, %v", i, err)
	}
}

// TestHostilePeerLosesScore: a peer that floods the descriptor topic with
// forged and junk descriptors is Rejected, its GossipSub score falls below
// zero on the honest node, and nothing it sent reaches the cache.
func TestHostilePeerLosesScore(t *testing.T) {
	nw := p2ptest.New(t, 2, p2ptest.WithPubSub())
	honest := startAll(t, &p2ptest.Net{Peers: nw.Peers[:1]})[0]
	hostile := nw.Peers[1]
	topic, err := hostile.PubSub.Join(Topic) // no validator: it sends what it likes
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	hsub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer hsub.Cancel()
	p2ptest.Eventually(t, 10*time.Second, "hostile peer in topic", func() bool {
		return len(honest.topic.ListPeers()) == 1
	})
	_, _, cases := badInputs(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		for _, c := range cases {
			if len(c.raw) == 0 || len(c.raw) > MaxEnvelopeSize || errors.Is(c.wantErr, ErrExpired) {
				continue
			}
			if err := topic.Publish(ctx, c.raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	p2ptest.Eventually(t, 15*time.Second, "hostile peer's score below zero", func() bool {
		return nw.Peers[0].Score(hostile.Host.ID()) < 0
	})
	if n := len(honest.Snapshot()); n != 0 {
		t.Fatalf("honest cache holds %d descriptors from the hostile peer", n)
	}
	if st := honest.Stats(); st.GossipRejected == 0 || st.GossipAccepted != 0 {
		t.Fatalf("stats %+v", st)
	}
}
