package descriptors

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-libp2p/core/record/pb"
	"google.golang.org/protobuf/proto"
)

// An Index is an owner's signed list of its live descriptor slots, stored in
// the DHT under /daitn/d/<IndexSlot(owner)>. It closes the gap between a
// capability look-up (which yields provider peer IDs) and the descriptor
// records (keyed by owner, kind and name): a seeker reads the provider's
// index, then fetches the slots whose tags match, all from the DHT, so a
// descriptor stays findable while its owner is briefly offline.
type Index struct {
	Owner   string       `json:"owner" cbor:"owner"`
	Seq     uint64       `json:"seq" cbor:"seq"` // unix nanoseconds at issue: increases across restarts
	Issued  time.Time    `json:"issued" cbor:"issued"`
	Expires time.Time    `json:"expires" cbor:"expires"`
	Entries []IndexEntry `json:"entries" cbor:"entries"`
}

// IndexEntry points at one descriptor slot.
type IndexEntry struct {
	Kind Kind     `json:"kind" cbor:"kind"`
	Name string   `json:"name" cbor:"name"`
	Seq  uint64   `json:"seq" cbor:"seq"` // seq of the descriptor when the index was signed
	Tags []string `json:"tags" cbor:"tags"`
}

// MaxIndexEntries bounds an index (and the work a seeker does per provider).
const MaxIndexEntries = 256

var indexInfo = kindInfo{"daitn-descriptor-index", []byte("/daitn/descriptor/index/1")}

// IndexSlot is the slot id of owner's index.
func IndexSlot(owner peer.ID) cid.Cid { return rawCID("daitn/index/" + owner.String()) }

// SignedIndex is a verified index with its envelope bytes.
type SignedIndex struct {
	Index
	Raw []byte
}

// Key is the DHT record key of the index.
func (s *SignedIndex) Key() string {
	p, _ := peer.Decode(s.Owner)
	return RecordKey(IndexSlot(p))
}

// Newer reports whether s should replace o.
func (s *SignedIndex) Newer(o *SignedIndex) bool {
	if o == nil {
		return true
	}
	if s.Seq != o.Seq {
		return s.Seq > o.Seq
	}
	return bytes.Compare(s.Raw, o.Raw) < 0
}

type indexRecord struct{ raw []byte }

func (r *indexRecord) Domain() string                 { return indexInfo.domain }
func (r *indexRecord) Codec() []byte                  { return indexInfo.payloadType }
func (r *indexRecord) MarshalRecord() ([]byte, error) { return r.raw, nil }
func (r *indexRecord) UnmarshalRecord(b []byte) error { r.raw = b; return nil }

// SignIndex signs an index of the given descriptors (issued now, expiring
// after ttl).
func SignIndex(priv crypto.PrivKey, ds []*Signed, now time.Time, ttl time.Duration) (*SignedIndex, error) {
	if priv == nil {
		return nil, fmt.Errorf("sign index: %w", &FieldError{Field: "key", Want: "the owner's private key", Err: ErrMissingField})
	}
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sign index: %w", err)
	}
	if len(ds) > MaxIndexEntries {
		return nil, fmt.Errorf("sign index: %w: %d entries (limit %d)", ErrOversized, len(ds), MaxIndexEntries)
	}
	now = now.UTC()
	ix := Index{Owner: pid.String(), Seq: uint64(now.UnixNano()), Issued: now.Truncate(time.Second), Expires: now.Add(ttl).Truncate(time.Second)}
	for _, d := range ds {
		ix.Entries = append(ix.Entries, IndexEntry{Kind: d.Kind, Name: d.Name, Seq: d.Seq, Tags: d.Tags()})
	}
	payload, err := encMode.Marshal(&ix)
	if err != nil {
		return nil, fmt.Errorf("sign index: encode: %w", err)
	}
	env, err := record.Seal(&indexRecord{raw: payload}, priv)
	if err != nil {
		return nil, fmt.Errorf("sign index: seal: %w", err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sign index: marshal: %w", err)
	}
	return OpenIndexAt(raw, now)
}

// OpenIndexAt verifies an index envelope (size, signature, canonical
// payload, owner = signer, entries, expiry at now).
func OpenIndexAt(b []byte, now time.Time) (*SignedIndex, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("open index: %w: %d bytes (limit %d)", ErrOversized, len(b), MaxEnvelopeSize)
	}
	var pe pb.Envelope
	if err := proto.Unmarshal(b, &pe); err != nil || pe.PublicKey == nil {
		return nil, fmt.Errorf("open index: %w: not a libp2p envelope", ErrMalformed)
	}
	if !bytes.Equal(pe.PayloadType, indexInfo.payloadType) {
		return nil, fmt.Errorf("open index: %w: payload type %q (want %s)", ErrKindMismatch, truncate(pe.PayloadType, 64), indexInfo.payloadType)
	}
	rec := &indexRecord{}
	env, err := record.ConsumeTypedEnvelope(b, rec)
	if err != nil {
		return nil, fmt.Errorf("open index: %w: %v", ErrBadSignature, err)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("open index: %w: signer key: %v", ErrMalformed, err)
	}
	var ix Index
	if err := decMode.Unmarshal(env.RawPayload, &ix); err != nil {
		return nil, fmt.Errorf("open index from %s: %w: %v", signer, ErrMalformed, err)
	}
	if canon, err := encMode.Marshal(&ix); err != nil || !bytes.Equal(canon, env.RawPayload) {
		return nil, fmt.Errorf("open index from %s: %w: payload is not in deterministic CBOR encoding", signer, ErrMalformed)
	}
	if ix.Owner != signer.String() {
		return nil, fmt.Errorf("open index from %s: %w: owner field %q", signer, ErrOwnerMismatch, ix.Owner)
	}
	if len(ix.Entries) > MaxIndexEntries {
		return nil, fmt.Errorf("open index from %s: %w: %d entries (limit %d)", signer, ErrOversized, len(ix.Entries), MaxIndexEntries)
	}
	for i, e := range ix.Entries {
		if !e.Kind.Valid() {
			return nil, fmt.Errorf("open index from %s: %w", signer, &FieldError{Field: fmt.Sprintf("entries[%d].kind", i), Value: strconv.Quote(string(e.Kind)), Want: "data, model, compute or testset", Err: ErrUnknownKind})
		}
		if err := checkName(fmt.Sprintf("entries[%d].name", i), e.Name, true); err != nil {
			return nil, fmt.Errorf("open index from %s: %w", signer, err)
		}
	}
	if !ix.Expires.After(ix.Issued) || ix.Expires.Sub(ix.Issued) > MaxTTL {
		return nil, fmt.Errorf("open index from %s: %w", signer, &FieldError{Field: "expires", Value: ix.Expires.UTC().String(), Want: "after issued and within " + MaxTTL.String(), Err: ErrInvalidField})
	}
	if !now.Before(ix.Expires) {
		return nil, fmt.Errorf("open index from %s: %w: expired at %s", signer, ErrExpired, ix.Expires.UTC().Format(time.RFC3339))
	}
	ix.Issued, ix.Expires = ix.Issued.UTC(), ix.Expires.UTC()
	return &SignedIndex{Index: ix, Raw: append([]byte(nil), b...)}, nil
}
