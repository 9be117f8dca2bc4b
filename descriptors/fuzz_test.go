package descriptors

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

var sentinels = []error{ErrOversized, ErrMalformed, ErrBadSignature, ErrKindMismatch, ErrOwnerMismatch,
	ErrExpired, ErrUnknownKind, ErrMissingField, ErrInvalidField}

func classified(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzOpen: whatever the bytes, Open either returns a descriptor that is
// exactly what was signed (id = CID of the input, payload canonical, fields
// valid, slot derived from owner/kind/name) or an error classified by one
// of the sentinels; never a panic.
func FuzzOpen(f *testing.F) {
	priv := newKey(f)
	for _, k := range Kinds {
		s, err := Sign(priv, sample(k, "seed"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s.Raw)
	}
	_, _, cases := badInputs(f)
	for _, c := range cases {
		if len(c.raw) < 4096 {
			f.Add(c.raw)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Open(b)
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if s.ID != VersionID(b) {
			t.Fatal("id is not the CID of the input")
		}
		env, err := record.UnmarshalEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := Marshal(&s.Descriptor)
		if err != nil || !bytes.Equal(canon, env.RawPayload) {
			t.Fatal("accepted payload does not re-encode to itself")
		}
		if err := Validate(&s.Descriptor); err != nil {
			t.Fatalf("accepted an invalid descriptor: %v", err)
		}
		owner, err := peer.Decode(s.Owner)
		if err != nil || !owner.MatchesPublicKey(env.PublicKey) {
			t.Fatal("owner is not the signer")
		}
		if s.Slot != SlotID(owner, s.Kind, s.Name) {
			t.Fatal("slot does not follow owner/kind/name")
		}
		if err := (RecordValidator{}).Validate(s.Key(), b); err != nil {
			t.Fatalf("Open accepts but the DHT validator rejects: %v", err)
		}
	})
}

// FuzzOpenIndex: an accepted index is signed by its owner, canonical, within
// limits and unexpired.
func FuzzOpenIndex(f *testing.F) {
	priv := newKey(f)
	var ds []*Signed
	for _, k := range Kinds {
		s, _ := Sign(priv, sample(k, "seed"))
		ds = append(ds, s)
	}
	ix, err := SignIndex(priv, ds, time.Now(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ix.Raw)
	f.Add(ds[0].Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.Now()
		ix, err := OpenIndexAt(b, now)
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		env, err := record.UnmarshalEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		owner, err := peer.Decode(ix.Owner)
		if err != nil || !owner.MatchesPublicKey(env.PublicKey) {
			t.Fatal("index owner is not the signer")
		}
		if len(ix.Entries) > MaxIndexEntries || !now.Before(ix.Expires) {
			t.Fatal("index outside limits accepted")
		}
		canon, err := encMode.Marshal(&ix.Index)
		if err != nil || !bytes.Equal(canon, env.RawPayload) {
			t.Fatal("accepted index does not re-encode to itself")
		}
		if err := (RecordValidator{}).Validate(ix.Key(), b); err != nil {
			t.Fatalf("OpenIndex accepts but the DHT validator rejects: %v", err)
		}
	})
}

// FuzzReveal: a decoded reveal round-trips, and VerifyReveal accepts it only
// if it is the owner's real reveal (same field, salt and value).
func FuzzReveal(f *testing.F) {
	priv := newKey(f)
	d, secrets, err := SealFields(sample(KindData, "sealed"), "data.label_dist", "data.samples")
	if err != nil {
		f.Fatal(err)
	}
	s, err := Sign(priv, d)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range secrets {
		b, _ := MarshalReveal(r)
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalReveal(b)
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		b2, err := MarshalReveal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := UnmarshalReveal(b2)
		if err != nil || r2.Field != r.Field || !bytes.Equal(r2.Salt, r.Salt) || !bytes.Equal(r2.Value, r.Value) {
			t.Fatal("reveal does not round-trip")
		}
		full, err := VerifyReveal(s, r)
		if err != nil {
			return
		}
		real, ok := secrets[r.Field]
		if !ok || !bytes.Equal(real.Salt, r.Salt) || !bytes.Equal(real.Value, r.Value) {
			t.Fatalf("accepted a reveal that is not the owner's: %+v", r)
		}
		if full == nil || full.Data == nil {
			t.Fatal("verified reveal returned no descriptor")
		}
	})
}
