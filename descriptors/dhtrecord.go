package descriptors

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record/pb"
	"google.golang.org/protobuf/proto"
)

// RecordValidator is the DHT's namespaced validator for "daitn": keys
// /daitn/d/<slot>, values descriptor or index envelopes. Validate checks the
// envelope (signature, payload type, size, expiry) and that the key is the
// slot the record claims, so nobody can park a record in someone else's
// slot. Select picks the newest version (highest seq, then latest issue).
//
// Register it with dht.NamespacedValidator(descriptors.RecordNamespace,
// descriptors.RecordValidator{}).
type RecordValidator struct {
	// Now, if set, replaces time.Now (tests).
	Now func() time.Time
}

func (v RecordValidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// ErrWrongKey is wrapped when a record is stored under a key that is not its slot.
var ErrWrongKey = errors.New("record key does not match its slot")

// Validate implements record.Validator.
func (v RecordValidator) Validate(key string, value []byte) error {
	_, err := v.open(key, value)
	return err
}

// recordVersion is what Select compares.
type recordVersion struct {
	seq    uint64
	issued time.Time
	raw    []byte
}

func (v RecordValidator) open(key string, value []byte) (recordVersion, error) {
	slot, err := parseRecordKey(key)
	if err != nil {
		return recordVersion{}, err
	}
	if len(value) > MaxEnvelopeSize {
		return recordVersion{}, fmt.Errorf("validate %s: %w: %d bytes (limit %d)", key, ErrOversized, len(value), MaxEnvelopeSize)
	}
	if isIndex(value) {
		ix, err := OpenIndexAt(value, v.now())
		if err != nil {
			return recordVersion{}, fmt.Errorf("validate %s: %w", key, err)
		}
		owner, _ := peer.Decode(ix.Owner)
		if want := IndexSlot(owner); !want.Equals(slot) {
			return recordVersion{}, fmt.Errorf("validate %s: %w: index of %s belongs under %s", key, ErrWrongKey, ix.Owner, RecordKey(want))
		}
		return recordVersion{seq: ix.Seq, issued: ix.Issued, raw: value}, nil
	}
	s, err := OpenAt(value, v.now())
	if err != nil {
		return recordVersion{}, fmt.Errorf("validate %s: %w", key, err)
	}
	if !s.Slot.Equals(slot) {
		return recordVersion{}, fmt.Errorf("validate %s: %w: %s %q of %s belongs under %s", key, ErrWrongKey, s.Kind, s.Name, s.Owner, s.Key())
	}
	return recordVersion{seq: s.Seq, issued: s.Issued, raw: value}, nil
}

func isIndex(b []byte) bool {
	var pe pb.Envelope
	return proto.Unmarshal(b, &pe) == nil && bytes.Equal(pe.PayloadType, indexInfo.payloadType)
}

// Select implements record.Validator: the index of the newest valid value.
// Invalid values are skipped; if none is valid Select returns an error.
func (v RecordValidator) Select(key string, values [][]byte) (int, error) {
	best := -1
	var bv recordVersion
	for i, val := range values {
		rv, err := v.open(key, val)
		if err != nil {
			continue
		}
		if best < 0 || newerVersion(rv, bv) {
			best, bv = i, rv
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("select %s: no valid record among %d", key, len(values))
	}
	return best, nil
}

func newerVersion(a, b recordVersion) bool {
	if a.seq != b.seq {
		return a.seq > b.seq
	}
	if !a.issued.Equal(b.issued) {
		return a.issued.After(b.issued)
	}
	return bytes.Compare(a.raw, b.raw) < 0
}

func parseRecordKey(key string) (cid.Cid, error) {
	const prefix = "/" + RecordNamespace + "/d/"
	if !strings.HasPrefix(key, prefix) {
		return cid.Undef, fmt.Errorf("validate %q: %w: want %s<slot cid>", key, ErrWrongKey, prefix)
	}
	c, err := cid.Decode(key[len(prefix):])
	if err != nil {
		return cid.Undef, fmt.Errorf("validate %q: %w: slot is not a CID: %v", key, ErrWrongKey, err)
	}
	return c, nil
}
