package overlay

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// Wire constants of the beacon. The domain and payload type are ours alone,
// so a beacon signature can never be replayed as a descriptor or a task.
const (
	BeaconTopic  = "daitn/beacons/1"
	BeaconDomain = "daitn-beacon"

	// MaxBeaconBytes bounds a sealed beacon (envelope included). A beacon
	// with every list at its cap stays under it; anything larger is hostile.
	MaxBeaconBytes = 8 << 10
	// MaxDescriptorIDs bounds the ids one beacon lists. A node with more
	// descriptors lists the newest and sets DescriptorCount; the rest are
	// found through the descriptor gossip and the DHT.
	MaxDescriptorIDs = 64
	// MaxRTTs bounds the measured round-trip times one beacon shares.
	MaxRTTs = 16
	// MaxRoles bounds the roles one beacon lists.
	MaxRoles = 16
	// MaxRTT is the largest plausible round-trip time; anything above is a
	// lie or a broken clock (the "RTT of hours").
	MaxRTT = 60 * time.Second
	// MaxTTL bounds how far in the future a beacon may set its expiry.
	MaxTTL = time.Hour
	// MaxClockSkew is how far in the future an issued time may be.
	MaxClockSkew = 30 * time.Second

	maxIDLen   = 128
	maxRoleLen = 32
)

// BeaconPayloadType identifies beacon payloads inside a record.Envelope.
var BeaconPayloadType = []byte("/daitn/beacon/1")

// Sentinel errors callers act on. ErrStale and ErrExpired are "ignore" class
// (old news, not misbehaviour); everything else from OpenBeacon is a reject.
var (
	ErrStale     = errors.New("beacon is not newer than the last one from this peer")
	ErrExpired   = errors.New("beacon has expired")
	ErrOversized = errors.New("beacon is too large")
)

// Reachability of a node as libp2p's AutoNAT sees it.
const (
	ReachUnknown = "unknown"
	ReachPublic  = "public"
	ReachPrivate = "private" // behind NAT or a firewall
)

// Load is what keeps a node busy right now.
type Load struct {
	// CPU is the busy share of all cores in percent, 0..100.
	CPU int64 `cbor:"1,keyasint,omitempty" json:"cpu"`
	// Queue is the number of waiting work items (training rounds, queries).
	Queue int64 `cbor:"2,keyasint,omitempty" json:"queue"`
	// Jobs is the number of training jobs running here.
	Jobs int64 `cbor:"3,keyasint,omitempty" json:"jobs"`
	// Queries is the number of inference queries in flight.
	Queries int64 `cbor:"4,keyasint,omitempty" json:"queries"`
}

// Capacity is what a node can still take on.
type Capacity struct {
	// Slots is how many more work items it accepts now.
	Slots int64 `cbor:"1,keyasint,omitempty" json:"slots"`
	// Cores is the number of idle CPU cores (rounded down).
	Cores int64 `cbor:"2,keyasint,omitempty" json:"cores"`
	// MemoryMB and DiskMB are free memory and disk in MiB.
	MemoryMB int64 `cbor:"3,keyasint,omitempty" json:"memory_mb"`
	DiskMB   int64 `cbor:"4,keyasint,omitempty" json:"disk_mb"`
}

// RTTSample is one round-trip time the beacon's sender measured.
type RTTSample struct {
	Peer   []byte `cbor:"1,keyasint" json:"peer"` // binary peer ID
	Micros int64  `cbor:"2,keyasint" json:"rtt_us"`
}

// Beacon is the payload a node gossips about itself. The sender is not a
// field: it is the envelope's signer, so it cannot be claimed falsely.
type Beacon struct {
	// Seq grows with every beacon a node sends in its lifetime; together
	// with Issued it orders beacons from one sender.
	Seq uint64 `cbor:"1,keyasint" json:"seq"`
	// Issued and Expires are Unix milliseconds.
	Issued  int64    `cbor:"2,keyasint" json:"issued"`
	Expires int64    `cbor:"3,keyasint" json:"expires"`
	Roles   []string `cbor:"4,keyasint,omitempty" json:"roles,omitempty"`
	Load    Load     `cbor:"5,keyasint" json:"load"`
	Free    Capacity `cbor:"6,keyasint" json:"free"`
	// Reach is one of ReachUnknown, ReachPublic, ReachPrivate.
	Reach   string `cbor:"7,keyasint,omitempty" json:"reach"`
	Relayed bool   `cbor:"8,keyasint,omitempty" json:"relayed,omitempty"`
	// Descriptors lists (up to MaxDescriptorIDs of) the node's descriptor
	// ids; DescriptorCount is how many it has in total.
	Descriptors     []string    `cbor:"9,keyasint,omitempty" json:"descriptors,omitempty"`
	DescriptorCount int64       `cbor:"10,keyasint,omitempty" json:"descriptor_count,omitempty"`
	RTTs            []RTTSample `cbor:"11,keyasint,omitempty" json:"rtts,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  8,
		MaxArrayElements: 256,
		MaxMapPairs:      64,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Domain implements record.Record.
func (b *Beacon) Domain() string { return BeaconDomain }

// Codec implements record.Record.
func (b *Beacon) Codec() []byte { return BeaconPayloadType }

// MarshalRecord implements record.Record with deterministic CBOR.
func (b *Beacon) MarshalRecord() ([]byte, error) { return encMode.Marshal(b) }

// UnmarshalRecord implements record.Record; it decodes only, Check validates.
func (b *Beacon) UnmarshalRecord(data []byte) error {
	if len(data) > MaxBeaconBytes {
		return fmt.Errorf("beacon payload of %d bytes: %w (limit %d)", len(data), ErrOversized, MaxBeaconBytes)
	}
	var nb Beacon
	if err := decMode.Unmarshal(data, &nb); err != nil {
		return fmt.Errorf("decode beacon payload: %w", err)
	}
	*b = nb
	return nil
}

// Check validates the values of a beacon at time now. It returns ErrExpired
// (wrapped) for a beacon past its expiry and a descriptive error naming the
// field for anything impossible.
func (b *Beacon) Check(self peer.ID, now time.Time) error {
	nowMs := now.UnixMilli()
	switch {
	case b.Issued <= 0:
		return fmt.Errorf("beacon field issued=%d: must be a positive Unix time in ms", b.Issued)
	case b.Issued > nowMs+MaxClockSkew.Milliseconds():
		return fmt.Errorf("beacon field issued=%s is in the future (now %s, allowed skew %s)",
			time.UnixMilli(b.Issued).UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), MaxClockSkew)
	case b.Expires <= b.Issued:
		return fmt.Errorf("beacon field expires=%d: must be after issued=%d", b.Expires, b.Issued)
	case b.Expires-b.Issued > MaxTTL.Milliseconds():
		return fmt.Errorf("beacon field expires: lifetime %s exceeds the maximum %s",
			time.Duration(b.Expires-b.Issued)*time.Millisecond, MaxTTL)
	}
	if err := checkRange("load.cpu", b.Load.CPU, 0, 100); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"load.queue", b.Load.Queue}, {"load.jobs", b.Load.Jobs}, {"load.queries", b.Load.Queries},
		{"free.slots", b.Free.Slots}, {"free.cores", b.Free.Cores},
		{"free.memory_mb", b.Free.MemoryMB}, {"free.disk_mb", b.Free.DiskMB},
		{"descriptor_count", b.DescriptorCount},
	} {
		if err := checkRange(f.name, f.v, 0, math.MaxInt32); err != nil {
			return err
		}
	}
	switch b.Reach {
	case "", ReachUnknown, ReachPublic, ReachPrivate:
	default:
		return fmt.Errorf("beacon field reach=%q: want %q, %q or %q", b.Reach, ReachPublic, ReachPrivate, ReachUnknown)
	}
	if len(b.Roles) > MaxRoles {
		return fmt.Errorf("beacon field roles: %d roles, at most %d allowed", len(b.Roles), MaxRoles)
	}
	for i, r := range b.Roles {
		if !validToken(r, maxRoleLen) {
			return fmt.Errorf("beacon field roles[%d]=%q: want 1-%d characters of a-z, 0-9, '-'", i, r, maxRoleLen)
		}
	}
	if len(b.Descriptors) > MaxDescriptorIDs {
		return fmt.Errorf("beacon field descriptors: %d ids, at most %d allowed", len(b.Descriptors), MaxDescriptorIDs)
	}
	if int64(len(b.Descriptors)) > b.DescriptorCount && b.DescriptorCount != 0 {
		return fmt.Errorf("beacon field descriptor_count=%d: smaller than the %d ids listed", b.DescriptorCount, len(b.Descriptors))
	}
	for i, id := range b.Descriptors {
		if id == "" || len(id) > maxIDLen || !printableASCII(id) {
			return fmt.Errorf("beacon field descriptors[%d]: want 1-%d printable ASCII characters, got %d bytes", i, maxIDLen, len(id))
		}
	}
	if len(b.RTTs) > MaxRTTs {
		return fmt.Errorf("beacon field rtts: %d samples, at most %d allowed", len(b.RTTs), MaxRTTs)
	}
	seen := make(map[string]bool, len(b.RTTs))
	for i, s := range b.RTTs {
		p, err := peer.IDFromBytes(s.Peer)
		if err != nil {
			return fmt.Errorf("beacon field rtts[%d].peer: not a peer ID: %w", i, err)
		}
		if p == self {
			return fmt.Errorf("beacon field rtts[%d].peer: a node cannot measure a round trip to itself", i)
		}
		if seen[string(s.Peer)] {
			return fmt.Errorf("beacon field rtts[%d].peer=%s: listed twice", i, p)
		}
		seen[string(s.Peer)] = true
		if s.Micros <= 0 || s.Micros > MaxRTT.Microseconds() {
			return fmt.Errorf("beacon field rtts[%d].rtt_us=%d: want 1..%d (at most %s)", i, s.Micros, MaxRTT.Microseconds(), MaxRTT)
		}
	}
	if b.Expires <= nowMs {
		return fmt.Errorf("beacon expired at %s: %w", time.UnixMilli(b.Expires).UTC().Format(time.RFC3339Nano), ErrExpired)
	}
	return nil
}

func checkRange(name string, v, lo, hi int64) error {
	if v < lo || v > hi {
		return fmt.Errorf("beacon field %s=%d: want %d..%d", name, v, lo, hi)
	}
	return nil
}

func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// SignedBeacon is a beacon whose envelope signature has been verified.
type SignedBeacon struct {
	From   peer.ID
	Beacon Beacon
	Raw    []byte // the sealed envelope as received
}

// SealBeacon signs b with key and returns the envelope bytes.
func SealBeacon(key crypto.PrivKey, b *Beacon) ([]byte, error) {
	env, err := record.Seal(b, key)
	if err != nil {
		return nil, fmt.Errorf("seal beacon: %w", err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal beacon envelope: %w", err)
	}
	if len(raw) > MaxBeaconBytes {
		return nil, fmt.Errorf("sealed beacon of %d bytes: %w (limit %d)", len(raw), ErrOversized, MaxBeaconBytes)
	}
	return raw, nil
}

// OpenBeacon verifies the envelope in data (size, signature, domain, payload
// type), decodes the beacon and checks its values at time now. The returned
// error wraps ErrExpired for old news; any other error is misbehaviour.
func OpenBeacon(data []byte, now time.Time) (*SignedBeacon, error) {
	if len(data) > MaxBeaconBytes {
		return nil, fmt.Errorf("beacon of %d bytes: %w (limit %d)", len(data), ErrOversized, MaxBeaconBytes)
	}
	var b Beacon
	env, err := record.ConsumeTypedEnvelope(data, &b)
	if err != nil {
		return nil, fmt.Errorf("open beacon envelope: %w", err)
	}
	if string(env.PayloadType) != string(BeaconPayloadType) {
		return nil, fmt.Errorf("open beacon envelope: payload type %q, want %q", env.PayloadType, BeaconPayloadType)
	}
	from, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("beacon signer: %w", err)
	}
	if err := b.Check(from, now); err != nil {
		return nil, err
	}
	return &SignedBeacon{From: from, Beacon: b, Raw: data}, nil
}

// RolesString joins roles for display.
func RolesString(r []string) string { return strings.Join(r, ",") }
