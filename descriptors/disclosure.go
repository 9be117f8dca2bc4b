package descriptors

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// Selective disclosure: the owner publishes some fields only as salted
// SHA-256 commitments and later hands a Reveal for one field to a chosen
// peer, who checks it against the commitment in the signed descriptor. The
// salt stops a peer from confirming a guess of a low-entropy value (a sample
// count) by hashing candidates.

// ErrBadReveal is wrapped when a revealed value does not match its commitment.
var ErrBadReveal = errors.New("reveal does not match commitment")

const saltLen = 16

// Reveal opens one sealed field. Value is the field's canonical CBOR.
type Reveal struct {
	Slot  string `json:"slot" cbor:"slot"` // slot id of the descriptor
	Field string `json:"field" cbor:"field"`
	Salt  []byte `json:"salt" cbor:"salt"`
	Value []byte `json:"value" cbor:"value"`
}

// MaxRevealSize bounds a Reveal's encoding.
const MaxRevealSize = MaxEnvelopeSize

var sealableFields = map[Kind][]string{
	KindData:    {"data.samples", "data.size_bytes", "data.features", "data.labels", "data.label_dist", "data.quality", "data.sketch", "data.price", "data.format"},
	KindModel:   {"model.params", "model.size_bytes", "model.inputs", "model.outputs", "model.claimed_accuracy", "model.evaluations", "model.latency_ms", "model.price", "model.weights_root", "model.description"},
	KindCompute: {"compute.gpus", "compute.price", "compute.availability", "compute.memory_bytes"},
	KindTestset: {"testset.samples", "testset.label_dist", "testset.sketch", "testset.price"},
}

// SealableFields lists the field paths of kind k that may be sealed.
func SealableFields(k Kind) []string { return append([]string(nil), sealableFields[k]...) }

func sealable(k Kind, path string) bool {
	for _, f := range sealableFields[k] {
		if f == path {
			return true
		}
	}
	return false
}

// fieldPtr returns a pointer to the field at path ("data.label_dist") in d.
func fieldPtr(d *Descriptor, path string) (reflect.Value, error) {
	if !sealable(d.Kind, path) {
		return reflect.Value{}, &FieldError{Field: "field", Value: strconv.Quote(path), Want: fmt.Sprintf("one of %v", sealableFields[d.Kind]), Err: ErrInvalidField}
	}
	var body reflect.Value
	switch d.Kind {
	case KindData:
		body = reflect.ValueOf(d.Data)
	case KindModel:
		body = reflect.ValueOf(d.Model)
	case KindCompute:
		body = reflect.ValueOf(d.Compute)
	case KindTestset:
		body = reflect.ValueOf(d.Testset)
	}
	if !body.IsValid() || body.IsNil() {
		return reflect.Value{}, &FieldError{Field: string(d.Kind), Want: "a body", Err: ErrMissingField}
	}
	name := path[len(d.Kind)+1:]
	st := body.Elem().Type()
	for i := 0; i < st.NumField(); i++ {
		if tag := st.Field(i).Tag.Get("json"); tag == name || (len(tag) > len(name) && tag[:len(name)+1] == name+",") {
			return body.Elem().Field(i).Addr(), nil
		}
	}
	return reflect.Value{}, &FieldError{Field: "field", Value: strconv.Quote(path), Want: "a field of the descriptor", Err: ErrInvalidField}
}

func commitment(path string, salt, value []byte) []byte {
	h := sha256.New()
	h.Write([]byte("daitn-disclosure/1\x00"))
	h.Write(appendUvarint(nil, uint64(len(path))))
	h.Write([]byte(path))
	h.Write(salt)
	h.Write(value)
	return h.Sum(nil)
}

// SealFields returns a copy of d in which each named field is replaced by a
// commitment, and the reveals the owner keeps to open them later. The
// copy's body is deep enough that d is not modified. Slot in the reveals is
// filled in once the owner is known (after Sign), see Reveal.ForSlot.
func SealFields(d *Descriptor, fields ...string) (*Descriptor, map[string]Reveal, error) {
	c, err := cloneDescriptor(d)
	if err != nil {
		return nil, nil, fmt.Errorf("seal fields: %w", err)
	}
	secrets := map[string]Reveal{}
	if len(fields) > 0 && c.Sealed == nil {
		c.Sealed = map[string][]byte{}
	}
	for _, f := range fields {
		p, err := fieldPtr(c, f)
		if err != nil {
			return nil, nil, fmt.Errorf("seal fields: %w", err)
		}
		val, err := encMode.Marshal(p.Interface())
		if err != nil {
			return nil, nil, fmt.Errorf("seal field %s: encode: %w", f, err)
		}
		salt := make([]byte, saltLen)
		if _, err := rand.Read(salt); err != nil {
			return nil, nil, fmt.Errorf("seal field %s: salt: %w", f, err)
		}
		c.Sealed[f] = commitment(f, salt, val)
		p.Elem().Set(reflect.Zero(p.Elem().Type()))
		secrets[f] = Reveal{Field: f, Salt: salt, Value: val}
	}
	return c, secrets, nil
}

// VerifyReveal checks r against the commitment in s and returns a copy of
// s's descriptor with the field filled in. A wrong value, salt or field is
// rejected with ErrBadReveal; s is never modified.
func VerifyReveal(s *Signed, r Reveal) (*Descriptor, error) {
	if s == nil {
		return nil, fmt.Errorf("verify reveal: %w", &FieldError{Field: "descriptor", Want: "a descriptor", Err: ErrMissingField})
	}
	want, ok := s.Sealed[r.Field]
	if !ok {
		return nil, fmt.Errorf("verify reveal of %s for %s: %w", r.Field, s.Slot, &FieldError{Field: "field", Value: strconv.Quote(r.Field), Want: "a field the descriptor sealed", Err: ErrInvalidField})
	}
	if r.Slot != "" && r.Slot != s.Slot.String() {
		return nil, fmt.Errorf("verify reveal of %s: %w: reveal is for slot %s, descriptor is %s", r.Field, ErrBadReveal, r.Slot, s.Slot)
	}
	if len(r.Salt) != saltLen {
		return nil, fmt.Errorf("verify reveal of %s for %s: %w", r.Field, s.Slot, &FieldError{Field: "salt", Value: fmt.Sprintf("%d bytes", len(r.Salt)), Want: "16 bytes", Err: ErrBadReveal})
	}
	if subtle.ConstantTimeCompare(commitment(r.Field, r.Salt, r.Value), want) != 1 {
		return nil, fmt.Errorf("verify reveal of %s for %s: %w", r.Field, s.Slot, ErrBadReveal)
	}
	c, err := cloneDescriptor(&s.Descriptor)
	if err != nil {
		return nil, fmt.Errorf("verify reveal of %s: %w", r.Field, err)
	}
	p, err := fieldPtr(c, r.Field)
	if err != nil {
		return nil, fmt.Errorf("verify reveal: %w", err)
	}
	if err := decMode.Unmarshal(r.Value, p.Interface()); err != nil {
		return nil, fmt.Errorf("verify reveal of %s: %w: value does not decode as the field's type: %v", r.Field, ErrMalformed, err)
	}
	return c, nil
}

// MarshalReveal and UnmarshalReveal are the wire form of a Reveal.
func MarshalReveal(r Reveal) ([]byte, error) { return encMode.Marshal(r) }

// UnmarshalReveal decodes a Reveal with a size limit.
func UnmarshalReveal(b []byte) (Reveal, error) {
	var r Reveal
	if len(b) > MaxRevealSize {
		return r, fmt.Errorf("decode reveal: %w: %d bytes (limit %d)", ErrOversized, len(b), MaxRevealSize)
	}
	if err := decMode.Unmarshal(b, &r); err != nil {
		return Reveal{}, fmt.Errorf("decode reveal: %w: %v", ErrMalformed, err)
	}
	return r, nil
}

// cloneDescriptor deep-copies d through its canonical encoding.
func cloneDescriptor(d *Descriptor) (*Descriptor, error) {
	if d == nil {
		return nil, &FieldError{Field: "descriptor", Want: "a descriptor", Err: ErrMissingField}
	}
	b, err := encMode.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("copy descriptor: %w", err)
	}
	var c Descriptor
	if err := decMode.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copy descriptor: %w", err)
	}
	// Sub-second times are lost by the encoding; keep the originals.
	c.Issued, c.Expires = d.Issued, d.Expires
	if d.Data != nil && c.Data != nil {
		c.Data.Updated = d.Data.Updated
	}
	if d.Testset != nil && c.Testset != nil {
		c.Testset.Updated = d.Testset.Updated
	}
	return &c, nil
}
