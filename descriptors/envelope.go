package descriptors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-libp2p/core/record/pb"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"
)

// Limits. MaxEnvelopeSize bounds everything a peer can make us decode; a
// data descriptor with a 512-slot sketch is about 2.5 KiB.
const (
	MaxEnvelopeSize = 64 << 10
	MaxNameLen      = 128
	MaxTTL          = 30 * 24 * time.Hour
	DefaultTTL      = 24 * time.Hour
)

// Sentinel errors. Every error Open and Validate return wraps exactly one of
// these, so callers (gossip validator, DHT validator, API) can classify it;
// the message around it names the field and value.
var (
	ErrOversized     = errors.New("descriptor too large")
	ErrMalformed     = errors.New("malformed descriptor")
	ErrBadSignature  = errors.New("bad signature")
	ErrKindMismatch  = errors.New("kind mismatch")
	ErrOwnerMismatch = errors.New("owner mismatch")
	ErrExpired       = errors.New("descriptor expired")
	ErrUnknownKind   = errors.New("unknown kind")
	ErrMissingField  = errors.New("missing required field")
	ErrInvalidField  = errors.New("invalid field")
	ErrStale         = errors.New("stale descriptor")
)

// FieldError names the field, the offending value and what is accepted.
type FieldError struct {
	Field string // e.g. "data.task"
	Value string // the offending value, quoted, or "" when missing
	Want  string // what would be accepted
	Err   error  // ErrMissingField or ErrInvalidField or another sentinel
}

func (e *FieldError) Error() string {
	if errors.Is(e.Err, ErrMissingField) {
		return fmt.Sprintf("%v: %s (want %s)", e.Err, e.Field, e.Want)
	}
	return fmt.Sprintf("%v: %s = %s (want %s)", e.Err, e.Field, e.Value, e.Want)
}

func (e *FieldError) Unwrap() error { return e.Err }

// kindInfo holds the signature domain and payload type of one kind. The
// domain is part of what is signed (record.Envelope signs domain, payload
// type and payload), so a data signature cannot verify as a model.
type kindInfo struct {
	domain      string
	payloadType []byte
}

var kindTable = map[Kind]kindInfo{
	KindData:    {"daitn-descriptor-data", []byte("/daitn/descriptor/data/1")},
	KindModel:   {"daitn-descriptor-model", []byte("/daitn/descriptor/model/1")},
	KindCompute: {"daitn-descriptor-compute", []byte("/daitn/descriptor/compute/1")},
	KindTestset: {"daitn-descriptor-testset", []byte("/daitn/descriptor/testset/1")},
}

// PayloadType returns the envelope payload type of kind k (nil if unknown).
func PayloadType(k Kind) []byte { return kindTable[k].payloadType }

// Domain returns the envelope signature domain of kind k ("" if unknown).
func Domain(k Kind) string { return kindTable[k].domain }

func kindOfPayloadType(pt []byte) (Kind, bool) {
	for k, ki := range kindTable {
		if bytes.Equal(ki.payloadType, pt) {
			return k, true
		}
	}
	return "", false
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	eo := cbor.CoreDetEncOptions()
	eo.Time = cbor.TimeUnix
	var err error
	if encMode, err = eo.EncMode(); err != nil {
		panic(err)
	}
	dopts := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  16,
		MaxArrayElements: 4096,
		MaxMapPairs:      4096,
	}
	if decMode, err = dopts.DecMode(); err != nil {
		panic(err)
	}
}

// Marshal returns the deterministic CBOR encoding of d (the envelope payload).
func Marshal(d *Descriptor) ([]byte, error) { return encMode.Marshal(d) }

// payloadRecord adapts a Descriptor to record.Record with its kind's domain
// and payload type.
type payloadRecord struct {
	kind Kind
	raw  []byte
}

func (r *payloadRecord) Domain() string                 { return kindTable[r.kind].domain }
func (r *payloadRecord) Codec() []byte                  { return kindTable[r.kind].payloadType }
func (r *payloadRecord) MarshalRecord() ([]byte, error) { return r.raw, nil }
func (r *payloadRecord) UnmarshalRecord(b []byte) error { r.raw = b; return nil }

// Signed is a verified descriptor together with its envelope bytes.
//
// Two ids: ID is the CID of the envelope bytes (the version id the
// architecture fixes: it changes with every re-signing), Slot is the CID of
// (owner, kind, name) and stays the same across versions. The DHT record
// lives under the slot key, which is what lets version 2 replace version 1
// there; users and the API accept either id.
type Signed struct {
	Descriptor
	ID   cid.Cid
	Slot cid.Cid
	Raw  []byte
}

// Key is the DHT record key of the descriptor's slot: /daitn/d/<slot>.
func (s *Signed) Key() string { return RecordKey(s.Slot) }

// Expired reports whether s has expired at now.
func (s *Signed) Expired(now time.Time) bool { return !now.Before(s.Expires) }

// Newer reports whether s should replace o in the same slot: a higher Seq,
// or with equal Seq a later issue time, or as a last tie-break the smaller
// envelope bytes (deterministic on every peer).
func (s *Signed) Newer(o *Signed) bool {
	if o == nil {
		return true
	}
	if s.Seq != o.Seq {
		return s.Seq > o.Seq
	}
	if !s.Issued.Equal(o.Issued) {
		return s.Issued.After(o.Issued)
	}
	return bytes.Compare(s.Raw, o.Raw) < 0
}

// RecordNamespace is the DHT namespace of descriptor records.
const RecordNamespace = "daitn"

// RecordKey returns "/daitn/d/<slot>".
func RecordKey(slot cid.Cid) string { return "/" + RecordNamespace + "/d/" + slot.String() }

// SlotID returns the stable id of (owner, kind, name).
func SlotID(owner peer.ID, kind Kind, name string) cid.Cid {
	return rawCID("daitn/slot/" + owner.String() + "/" + string(kind) + "/" + name)
}

func rawCID(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1) // cannot fail for SHA2_256
	return cid.NewCidV1(cid.Raw, h)
}

// VersionID returns the CID (sha2-256, raw codec) of envelope bytes.
func VersionID(raw []byte) cid.Cid {
	h, _ := mh.Sum(raw, mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

// Sign fills in the header defaults, validates d and seals it in a
// record.Envelope signed by priv. d is not modified.
//
// Defaults: Owner = the key's peer ID (a different non-empty Owner is an
// error), Seq = 1, Issued = now, Expires = Issued + DefaultTTL. Times are
// truncated to whole seconds (the wire format's precision).
func Sign(priv crypto.PrivKey, d *Descriptor) (*Signed, error) {
	return SignAt(priv, d, time.Now())
}

// SignAt is Sign with an explicit "now" for the Issued default.
func SignAt(priv crypto.PrivKey, d *Descriptor, now time.Time) (*Signed, error) {
	if d == nil {
		return nil, fmt.Errorf("sign descriptor: %w", &FieldError{Field: "descriptor", Want: "a descriptor", Err: ErrMissingField})
	}
	if priv == nil {
		return nil, fmt.Errorf("sign descriptor: %w", &FieldError{Field: "key", Want: "the owner's private key", Err: ErrMissingField})
	}
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sign descriptor: peer id of key: %w", err)
	}
	c := *d
	if c.Owner == "" {
		c.Owner = pid.String()
	} else if c.Owner != pid.String() {
		return nil, fmt.Errorf("sign descriptor: %w: owner %q is not the signing key's peer %s", ErrOwnerMismatch, c.Owner, pid)
	}
	if c.Seq == 0 {
		c.Seq = 1
	}
	if c.Issued.IsZero() {
		c.Issued = now
	}
	c.Issued = c.Issued.UTC().Truncate(time.Second)
	if c.Expires.IsZero() {
		c.Expires = c.Issued.Add(DefaultTTL)
	}
	c.Expires = c.Expires.UTC().Truncate(time.Second)
	if c.Data != nil {
		dd := *c.Data
		if !dd.Updated.IsZero() {
			dd.Updated = dd.Updated.UTC().Truncate(time.Second)
		}
		c.Data = &dd
	}
	if c.Testset != nil {
		tt := *c.Testset
		if !tt.Updated.IsZero() {
			tt.Updated = tt.Updated.UTC().Truncate(time.Second)
		}
		c.Testset = &tt
	}
	if err := Validate(&c); err != nil {
		return nil, fmt.Errorf("sign descriptor %s %q: %w", c.Kind, c.Name, err)
	}
	payload, err := Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("sign descriptor %s %q: encode: %w", c.Kind, c.Name, err)
	}
	env, err := record.Seal(&payloadRecord{kind: c.Kind, raw: payload}, priv)
	if err != nil {
		return nil, fmt.Errorf("sign descriptor %s %q: seal: %w", c.Kind, c.Name, err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sign descriptor %s %q: marshal envelope: %w", c.Kind, c.Name, err)
	}
	if len(raw) > MaxEnvelopeSize {
		return nil, fmt.Errorf("sign descriptor %s %q: %w: %d bytes (limit %d)", c.Kind, c.Name, ErrOversized, len(raw), MaxEnvelopeSize)
	}
	// Decode what we produced so the returned value is exactly what every
	// other peer will see (e.g. times in the wire's precision).
	return OpenAt(raw, now)
}

// Open verifies envelope bytes from anyone and returns the descriptor.
// It checks, in order: size, envelope framing, payload type (kind),
// signature under that kind's domain, CBOR payload (canonical), header kind,
// owner = signer, required fields, expiry. The error wraps the sentinel of
// the first failed check.
func Open(b []byte) (*Signed, error) { return OpenAt(b, time.Now()) }

// OpenAt is Open with an explicit "now" for the expiry check.
func OpenAt(b []byte, now time.Time) (*Signed, error) {
	s, err := OpenUnexpired(b)
	if err != nil {
		return nil, err
	}
	if s.Expired(now) {
		return nil, fmt.Errorf("open descriptor %s: %w: expired at %s (now %s)", s.ID, ErrExpired,
			s.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return s, nil
}

// OpenUnexpired does every check of Open except expiry. Stores use it to
// read back what they kept.
func OpenUnexpired(b []byte) (*Signed, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("open descriptor: %w: %d bytes (limit %d)", ErrOversized, len(b), MaxEnvelopeSize)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("open descriptor: %w: empty input", ErrMalformed)
	}
	var pe pb.Envelope
	if err := proto.Unmarshal(b, &pe); err != nil {
		return nil, fmt.Errorf("open descriptor: %w: envelope is truncated or not a libp2p envelope: %v", ErrMalformed, err)
	}
	if pe.PublicKey == nil || len(pe.Signature) == 0 || len(pe.PayloadType) == 0 {
		return nil, fmt.Errorf("open descriptor: %w: envelope lacks public key, payload type or signature", ErrMalformed)
	}
	kind, ok := kindOfPayloadType(pe.PayloadType)
	if !ok {
		return nil, fmt.Errorf("open descriptor: %w: payload type %q (want one of /daitn/descriptor/{data,model,compute,testset}/1)", ErrUnknownKind, truncate(pe.PayloadType, 64))
	}
	rec := &payloadRecord{kind: kind}
	env, err := record.ConsumeTypedEnvelope(b, rec)
	if err != nil {
		if env == nil {
			return nil, fmt.Errorf("open %s descriptor: %w: %v", kind, ErrMalformed, err)
		}
		// Say "swapped" rather than just "bad signature" when the signature
		// is good for another kind: someone relabelled a signed payload.
		for k2, ki := range kindTable {
			if k2 != kind && verifiesAs(&pe, env.PublicKey, ki) {
				return nil, fmt.Errorf("open %s descriptor: %w: payload was signed as a %s descriptor and relabelled as %s", kind, ErrKindMismatch, k2, kind)
			}
		}
		return nil, fmt.Errorf("open %s descriptor: %w: signature does not verify for domain %s", kind, ErrBadSignature, kindTable[kind].domain)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("open %s descriptor: %w: signer key: %v", kind, ErrMalformed, err)
	}
	var d Descriptor
	if err := decMode.Unmarshal(env.RawPayload, &d); err != nil {
		return nil, fmt.Errorf("open %s descriptor from %s: %w: payload is not valid descriptor CBOR: %v", kind, signer, ErrMalformed, err)
	}
	canon, err := Marshal(&d)
	if err != nil || !bytes.Equal(canon, env.RawPayload) {
		return nil, fmt.Errorf("open %s descriptor from %s: %w: payload is not in deterministic CBOR encoding", kind, signer, ErrMalformed)
	}
	if d.Kind != kind {
		return nil, fmt.Errorf("open %s descriptor from %s: %w: header kind %q inside a %s envelope", kind, signer, ErrKindMismatch, d.Kind, kind)
	}
	if d.Owner != signer.String() {
		return nil, fmt.Errorf("open %s descriptor from %s: %w: owner field %q is not the signer %s", kind, signer, ErrOwnerMismatch, d.Owner, signer)
	}
	if err := Validate(&d); err != nil {
		return nil, fmt.Errorf("open %s descriptor %q from %s: %w", kind, d.Name, signer, err)
	}
	normalizeTimes(&d)
	return &Signed{
		Descriptor: d,
		ID:         VersionID(b),
		Slot:       SlotID(signer, kind, d.Name),
		Raw:        append([]byte(nil), b...),
	}, nil
}

// normalizeTimes puts decoded times in UTC so JSON and comparisons are stable.
func normalizeTimes(d *Descriptor) {
	d.Issued = d.Issued.UTC()
	d.Expires = d.Expires.UTC()
	if d.Data != nil && !d.Data.Updated.IsZero() {
		d.Data.Updated = d.Data.Updated.UTC()
	}
	if d.Testset != nil && !d.Testset.Updated.IsZero() {
		d.Testset.Updated = d.Testset.Updated.UTC()
	}
}

func verifiesAs(pe *pb.Envelope, pub crypto.PubKey, ki kindInfo) bool {
	ok, err := pub.Verify(unsignedBytes(ki.domain, ki.payloadType, pe.Payload), pe.Signature)
	return err == nil && ok
}

// unsignedBytes mirrors record.Envelope's signed layout: each of domain,
// payload type and payload prefixed by its uvarint length.
func unsignedBytes(domain string, pt, payload []byte) []byte {
	var out []byte
	for _, f := range [][]byte{[]byte(domain), pt, payload} {
		out = appendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	return out
}

func appendUvarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// signedJSON is Signed's JSON form: ids as plain CID strings (not the IPLD
// {"/": ...} form) next to the descriptor's own fields.
type signedJSON struct {
	Descriptor
	ID   string `json:"id"`
	Slot string `json:"slot"`
}

// MarshalJSON prints the descriptor with its id and slot as strings.
func (s Signed) MarshalJSON() ([]byte, error) {
	return json.Marshal(signedJSON{Descriptor: s.Descriptor, ID: s.ID.String(), Slot: s.Slot.String()})
}

// UnmarshalJSON reads what MarshalJSON wrote (API clients). Raw is not part
// of the JSON, so the result is informational, not re-verifiable.
func (s *Signed) UnmarshalJSON(b []byte) error {
	var in signedJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	s.Descriptor = in.Descriptor
	var err error
	if in.ID != "" {
		if s.ID, err = cid.Decode(in.ID); err != nil {
			return fmt.Errorf("descriptor id %q: %w", in.ID, err)
		}
	}
	if in.Slot != "" {
		if s.Slot, err = cid.Decode(in.Slot); err != nil {
			return fmt.Errorf("descriptor slot %q: %w", in.Slot, err)
		}
	}
	return nil
}
