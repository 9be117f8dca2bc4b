package taskpool

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

// Limits on what a peer may send us. Decoders check them before doing any
// work, so a hostile peer cannot make us allocate more than this.
const (
	// MaxInlineInput is the largest input carried inside a posting; bigger
	// inputs go by CID through the transfer service.
	MaxInlineInput = 64 << 10
	// MaxPostingBytes bounds a signed posting envelope on the wire.
	MaxPostingBytes = MaxInlineInput + 16<<10
	// MaxBidBytes bounds a signed bid, assignment or acknowledgement.
	MaxBidBytes = 8 << 10
	// DefaultMaxResult is the default bound on a result's output.
	DefaultMaxResult = 1 << 20
	// MaxEligible bounds the Eligible list of a posting.
	MaxEligible = 256
	// MaxCredentials bounds the credentials of a bid.
	MaxCredentials = 16
	maxIDLen       = 64
	maxNameLen     = 64
	maxTextLen     = 512
)

// Tier is the priority class of a task. When agents are scarce they take
// gold before silver before bronze.
type Tier string

// The tiers, best first.
const (
	Gold   Tier = "gold"
	Silver Tier = "silver"
	Bronze Tier = "bronze"
)

// rank orders tiers: higher is served first.
func (t Tier) rank() int {
	switch t {
	case Gold:
		return 3
	case Silver:
		return 2
	case Bronze:
		return 1
	}
	return 0
}

// ParseTier accepts gold, silver or bronze (empty means bronze).
func ParseTier(s string) (Tier, error) {
	switch Tier(strings.ToLower(s)) {
	case "":
		return Bronze, nil
	case Gold, Silver, Bronze:
		return Tier(strings.ToLower(s)), nil
	}
	return "", fmt.Errorf("tier %q: want gold, silver or bronze", s)
}

// Policy says how the poster picks among interested agents.
type Policy string

// The assignment policies.
const (
	// Approve leaves the choice to the client (Service.Approve).
	Approve Policy = "approve"
	// First assigns the first acceptable bid.
	First Policy = "first"
	// Best collects bids for the bid window and assigns the highest Score.
	Best Policy = "best"
)

// ParsePolicy accepts approve, first or best (empty means first).
func ParsePolicy(s string) (Policy, error) {
	switch Policy(strings.ToLower(s)) {
	case "":
		return First, nil
	case Approve, First, Best:
		return Policy(strings.ToLower(s)), nil
	}
	return "", fmt.Errorf("policy %q: want approve, first or best", s)
}

// Task is a posting: the signed description of a piece of work. Times are
// Unix milliseconds so the encoding is exact and language-neutral.
type Task struct {
	ID          string   `cbor:"1,keyasint" json:"id"`
	Pool        string   `cbor:"2,keyasint" json:"pool"`
	Kind        string   `cbor:"3,keyasint" json:"kind"`
	Skill       string   `cbor:"4,keyasint,omitempty" json:"skill,omitempty"`
	Input       []byte   `cbor:"5,keyasint,omitempty" json:"input,omitempty"`
	InputCID    string   `cbor:"6,keyasint,omitempty" json:"input_cid,omitempty"`
	Deadline    int64    `cbor:"7,keyasint" json:"deadline"`
	MaxPrice    float64  `cbor:"8,keyasint,omitempty" json:"max_price,omitempty"`
	Tier        Tier     `cbor:"9,keyasint" json:"tier"`
	Policy      Policy   `cbor:"10,keyasint" json:"policy"`
	Poster      string   `cbor:"11,keyasint" json:"poster"`
	Eligible    []string `cbor:"12,keyasint,omitempty" json:"eligible,omitempty"`
	LeaseMs     int64    `cbor:"13,keyasint" json:"lease_ms"`
	BidWindowMs int64    `cbor:"14,keyasint,omitempty" json:"bid_window_ms,omitempty"`
	Created     int64    `cbor:"15,keyasint" json:"created"`
	// Repost counts how often the poster put the task back in the pool
	// (lease expired); a higher Repost supersedes a lower one.
	Repost uint32 `cbor:"16,keyasint,omitempty" json:"repost,omitempty"`
}

// DeadlineTime is the task deadline as a time.Time.
func (t *Task) DeadlineTime() time.Time { return time.UnixMilli(t.Deadline) }

// Lease is the lease duration the poster grants.
func (t *Task) Lease() time.Duration { return time.Duration(t.LeaseMs) * time.Millisecond }

// EligibleFor reports whether p may bid on t.
func (t *Task) EligibleFor(p peer.ID) bool {
	if len(t.Eligible) == 0 {
		return true
	}
	s := p.String()
	for _, e := range t.Eligible {
		if e == s {
			return true
		}
	}
	return false
}

// Validate checks every field of a posting and names the first bad one.
func (t *Task) Validate() error {
	if err := validID("id", t.ID); err != nil {
		return err
	}
	if err := validName("pool", t.Pool); err != nil {
		return err
	}
	if err := validName("kind", t.Kind); err != nil {
		return err
	}
	if t.Skill != "" {
		if err := validName("skill", t.Skill); err != nil {
			return err
		}
	}
	if len(t.Input) > MaxInlineInput {
		return fmt.Errorf("input: %d bytes inline, at most %d accepted (use an input CID)", len(t.Input), MaxInlineInput)
	}
	if len(t.InputCID) > 128 {
		return fmt.Errorf("input_cid: %d characters, at most 128 accepted", len(t.InputCID))
	}
	if math.IsNaN(t.MaxPrice) || math.IsInf(t.MaxPrice, 0) || t.MaxPrice < 0 {
		return fmt.Errorf("max_price: %v, want a finite number >= 0", t.MaxPrice)
	}
	if t.Tier.rank() == 0 {
		return fmt.Errorf("tier: %q, want gold, silver or bronze", t.Tier)
	}
	switch t.Policy {
	case Approve, First, Best:
	default:
		return fmt.Errorf("policy: %q, want approve, first or best", t.Policy)
	}
	if _, err := peer.Decode(t.Poster); err != nil {
		return fmt.Errorf("poster: %q is not a peer id: %w", t.Poster, err)
	}
	if len(t.Eligible) > MaxEligible {
		return fmt.Errorf("eligible: %d peers, at most %d accepted", len(t.Eligible), MaxEligible)
	}
	for i, e := range t.Eligible {
		if _, err := peer.Decode(e); err != nil {
			return fmt.Errorf("eligible[%d]: %q is not a peer id", i, e)
		}
	}
	if t.LeaseMs < 10 || t.LeaseMs > int64(24*time.Hour/time.Millisecond) {
		return fmt.Errorf("lease_ms: %d, want 10ms to 24h", t.LeaseMs)
	}
	if t.BidWindowMs < 0 || t.BidWindowMs > int64(time.Hour/time.Millisecond) {
		return fmt.Errorf("bid_window_ms: %d, want 0 to 1h", t.BidWindowMs)
	}
	if t.Created <= 0 {
		return fmt.Errorf("created: %d, want a Unix time in ms", t.Created)
	}
	if t.Deadline <= t.Created {
		return fmt.Errorf("deadline: %d is not after created %d", t.Deadline, t.Created)
	}
	return nil
}

func validID(field, s string) error {
	if s == "" || len(s) > maxIDLen {
		return fmt.Errorf("%s: %q, want 1 to %d characters", field, s, maxIDLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%s: %q, want letters, digits, '-', '_' or '.'", field, s)
		}
	}
	return nil
}

func validName(field, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%s: %q, want 1 to %d characters", field, s, maxNameLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:", r)) {
			return fmt.Errorf("%s: %q, want letters, digits or -_./=:", field, s)
		}
	}
	return nil
}

// Bid is an agent's signed interest in a task, sent to the poster.
type Bid struct {
	TaskID      string   `cbor:"1,keyasint" json:"task_id"`
	Bidder      string   `cbor:"2,keyasint" json:"bidder"`
	Price       float64  `cbor:"3,keyasint" json:"price"`
	ExpectedMs  int64    `cbor:"4,keyasint" json:"expected_ms"`
	Load        float64  `cbor:"5,keyasint" json:"load"`
	Credentials []string `cbor:"6,keyasint,omitempty" json:"credentials,omitempty"`
	Time        int64    `cbor:"7,keyasint" json:"time"`
	// Repost is the posting generation the bid answers.
	Repost uint32 `cbor:"8,keyasint,omitempty" json:"repost,omitempty"`
}

// Validate checks a bid's fields.
func (b *Bid) Validate() error {
	if err := validID("task_id", b.TaskID); err != nil {
		return err
	}
	if _, err := peer.Decode(b.Bidder); err != nil {
		return fmt.Errorf("bidder: %q is not a peer id", b.Bidder)
	}
	if math.IsNaN(b.Price) || math.IsInf(b.Price, 0) || b.Price < 0 {
		return fmt.Errorf("price: %v, want a finite number >= 0", b.Price)
	}
	if b.ExpectedMs < 0 {
		return fmt.Errorf("expected_ms: %d, want >= 0", b.ExpectedMs)
	}
	if math.IsNaN(b.Load) || b.Load < 0 || b.Load > 1 {
		return fmt.Errorf("load: %v, want 0 to 1", b.Load)
	}
	if len(b.Credentials) > MaxCredentials {
		return fmt.Errorf("credentials: %d, at most %d accepted", len(b.Credentials), MaxCredentials)
	}
	for i, c := range b.Credentials {
		if len(c) > maxTextLen {
			return fmt.Errorf("credentials[%d]: %d characters, at most %d accepted", i, len(c), maxTextLen)
		}
	}
	return nil
}

// Assignment is the poster's signed grant of a task to one agent for one
// epoch. Epoch is a fencing token: it grows with every assignment of the
// task, and only a result carrying the current epoch is applied.
type Assignment struct {
	TaskID     string `cbor:"1,keyasint" json:"task_id"`
	Poster     string `cbor:"2,keyasint" json:"poster"`
	Agent      string `cbor:"3,keyasint" json:"agent"`
	Epoch      uint64 `cbor:"4,keyasint" json:"epoch"`
	LeaseUntil int64  `cbor:"5,keyasint" json:"lease_until"`
	Time       int64  `cbor:"6,keyasint" json:"time"`
}

// Validate checks an assignment's fields.
func (a *Assignment) Validate() error {
	if err := validID("task_id", a.TaskID); err != nil {
		return err
	}
	if _, err := peer.Decode(a.Poster); err != nil {
		return fmt.Errorf("poster: %q is not a peer id", a.Poster)
	}
	if _, err := peer.Decode(a.Agent); err != nil {
		return fmt.Errorf("agent: %q is not a peer id", a.Agent)
	}
	if a.Epoch == 0 {
		return errors.New("epoch: 0, want >= 1")
	}
	return nil
}

// Ack is the agent's signed acceptance of an assignment.
type Ack struct {
	TaskID string `cbor:"1,keyasint" json:"task_id"`
	Agent  string `cbor:"2,keyasint" json:"agent"`
	Epoch  uint64 `cbor:"3,keyasint" json:"epoch"`
}

// Validate checks an ack's fields.
func (a *Ack) Validate() error {
	if err := validID("task_id", a.TaskID); err != nil {
		return err
	}
	if _, err := peer.Decode(a.Agent); err != nil {
		return fmt.Errorf("agent: %q is not a peer id", a.Agent)
	}
	if a.Epoch == 0 {
		return errors.New("epoch: 0, want >= 1")
	}
	return nil
}

// Result is the agent's signed outcome of one assignment.
type Result struct {
	TaskID string `cbor:"1,keyasint" json:"task_id"`
	Poster string `cbor:"2,keyasint" json:"poster"`
	Agent  string `cbor:"3,keyasint" json:"agent"`
	Epoch  uint64 `cbor:"4,keyasint" json:"epoch"`
	OK     bool   `cbor:"5,keyasint" json:"ok"`
	Output []byte `cbor:"6,keyasint,omitempty" json:"output,omitempty"`
	Error  string `cbor:"7,keyasint,omitempty" json:"error,omitempty"`
	Time   int64  `cbor:"8,keyasint" json:"time"`
}

// Validate checks a result's fields against the output limit.
func (r *Result) Validate(maxOutput int) error {
	if err := validID("task_id", r.TaskID); err != nil {
		return err
	}
	if _, err := peer.Decode(r.Poster); err != nil {
		return fmt.Errorf("poster: %q is not a peer id", r.Poster)
	}
	if _, err := peer.Decode(r.Agent); err != nil {
		return fmt.Errorf("agent: %q is not a peer id", r.Agent)
	}
	if r.Epoch == 0 {
		return errors.New("epoch: 0, want >= 1")
	}
	if len(r.Output) > maxOutput {
		return fmt.Errorf("output: %d bytes, at most %d accepted", len(r.Output), maxOutput)
	}
	if len(r.Error) > 4096 {
		return fmt.Errorf("error: %d characters, at most 4096 accepted", len(r.Error))
	}
	return nil
}

// Signature domains and payload types: one pair per kind, so a signature
// over one kind can never be replayed as another.
const (
	domainPosting    = "daitn-taskpool-posting"
	domainBid        = "daitn-taskpool-bid"
	domainAssignment = "daitn-taskpool-assignment"
	domainAck        = "daitn-taskpool-ack"
	domainResult     = "daitn-taskpool-result"
)

var (
	codecPosting    = []byte("/daitn/taskpool/posting")
	codecBid        = []byte("/daitn/taskpool/bid")
	codecAssignment = []byte("/daitn/taskpool/assignment")
	codecAck        = []byte("/daitn/taskpool/ack")
	codecResult     = []byte("/daitn/taskpool/result")
)

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
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   8,
		MaxArrayElements:  1024,
		MaxMapPairs:       64,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// The record wrappers give each payload its domain and codec.
type postingRec struct{ *Task }
type bidRec struct{ *Bid }
type assignmentRec struct{ *Assignment }
type ackRec struct{ *Ack }
type resultRec struct{ *Result }

func (postingRec) Domain() string                   { return domainPosting }
func (postingRec) Codec() []byte                    { return codecPosting }
func (r postingRec) MarshalRecord() ([]byte, error) { return encMode.Marshal(r.Task) }
func (r postingRec) UnmarshalRecord(b []byte) error { return decMode.Unmarshal(b, r.Task) }

func (bidRec) Domain() string                   { return domainBid }
func (bidRec) Codec() []byte                    { return codecBid }
func (r bidRec) MarshalRecord() ([]byte, error) { return encMode.Marshal(r.Bid) }
func (r bidRec) UnmarshalRecord(b []byte) error { return decMode.Unmarshal(b, r.Bid) }

func (assignmentRec) Domain() string                   { return domainAssignment }
func (assignmentRec) Codec() []byte                    { return codecAssignment }
func (r assignmentRec) MarshalRecord() ([]byte, error) { return encMode.Marshal(r.Assignment) }
func (r assignmentRec) UnmarshalRecord(b []byte) error { return decMode.Unmarshal(b, r.Assignment) }

func (ackRec) Domain() string                   { return domainAck }
func (ackRec) Codec() []byte                    { return codecAck }
func (r ackRec) MarshalRecord() ([]byte, error) { return encMode.Marshal(r.Ack) }
func (r ackRec) UnmarshalRecord(b []byte) error { return decMode.Unmarshal(b, r.Ack) }

func (resultRec) Domain() string                   { return domainResult }
func (resultRec) Codec() []byte                    { return codecResult }
func (r resultRec) MarshalRecord() ([]byte, error) { return encMode.Marshal(r.Result) }
func (r resultRec) UnmarshalRecord(b []byte) error { return decMode.Unmarshal(b, r.Result) }

func seal(rec record.Record, key crypto.PrivKey) ([]byte, error) {
	env, err := record.Seal(rec, key)
	if err != nil {
		return nil, err
	}
	return env.Marshal()
}

// open checks size, signature, domain and payload type, decodes the payload
// into rec and returns the signer.
func open(data []byte, limit int, rec record.Record) (peer.ID, error) {
	if len(data) > limit {
		return "", fmt.Errorf("envelope: %d bytes, at most %d accepted", len(data), limit)
	}
	env, err := record.ConsumeTypedEnvelope(data, rec)
	if err != nil {
		return "", fmt.Errorf("envelope: %w", err)
	}
	if string(env.PayloadType) != string(rec.Codec()) {
		return "", fmt.Errorf("envelope: payload type %q, want %q", env.PayloadType, rec.Codec())
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return "", fmt.Errorf("envelope: signer key: %w", err)
	}
	return signer, nil
}

// OpenPosting decodes and verifies a signed posting: size, signature,
// fields, and that the signer is the poster it names.
func OpenPosting(data []byte) (*Task, error) {
	var t Task
	signer, err := open(data, MaxPostingBytes, postingRec{&t})
	if err != nil {
		return nil, fmt.Errorf("posting: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("posting: %w", err)
	}
	if signer.String() != t.Poster {
		return nil, fmt.Errorf("posting: signed by %s but names poster %s", signer, t.Poster)
	}
	return &t, nil
}

// OpenBid decodes and verifies a signed bid whose signer must be its bidder.
func OpenBid(data []byte) (*Bid, error) {
	var b Bid
	signer, err := open(data, MaxBidBytes, bidRec{&b})
	if err != nil {
		return nil, fmt.Errorf("bid: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("bid: %w", err)
	}
	if signer.String() != b.Bidder {
		return nil, fmt.Errorf("bid: signed by %s but names bidder %s", signer, b.Bidder)
	}
	return &b, nil
}

// OpenAssignment decodes and verifies a signed assignment whose signer must
// be the poster it names.
func OpenAssignment(data []byte) (*Assignment, error) {
	var a Assignment
	signer, err := open(data, MaxBidBytes, assignmentRec{&a})
	if err != nil {
		return nil, fmt.Errorf("assignment: %w", err)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("assignment: %w", err)
	}
	if signer.String() != a.Poster {
		return nil, fmt.Errorf("assignment: signed by %s but names poster %s", signer, a.Poster)
	}
	return &a, nil
}

// OpenAck decodes and verifies a signed ack whose signer must be its agent.
func OpenAck(data []byte) (*Ack, error) {
	var a Ack
	signer, err := open(data, MaxBidBytes, ackRec{&a})
	if err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	if signer.String() != a.Agent {
		return nil, fmt.Errorf("ack: signed by %s but names agent %s", signer, a.Agent)
	}
	return &a, nil
}

// OpenResult decodes and verifies a signed result whose signer must be its
// agent; maxOutput bounds the output.
func OpenResult(data []byte, maxOutput int) (*Result, error) {
	var r Result
	signer, err := open(data, maxOutput+16<<10, resultRec{&r})
	if err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	if err := r.Validate(maxOutput); err != nil {
		return nil, fmt.Errorf("result: %w", err)
	}
	if signer.String() != r.Agent {
		return nil, fmt.Errorf("result: signed by %s but names agent %s", signer, r.Agent)
	}
	return &r, nil
}

// SealPosting signs t with key; t.Poster must be key's peer.
func SealPosting(t *Task, key crypto.PrivKey) ([]byte, error) {
	return sealChecked(postingRec{t}, key, t.Poster, t.Validate)
}

// SealBid signs b with key; b.Bidder must be key's peer.
func SealBid(b *Bid, key crypto.PrivKey) ([]byte, error) {
	return sealChecked(bidRec{b}, key, b.Bidder, b.Validate)
}

func sealChecked(rec record.Record, key crypto.PrivKey, who string, validate func() error) ([]byte, error) {
	if err := validate(); err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if id.String() != who {
		return nil, fmt.Errorf("signer %s is not %s", id, who)
	}
	return seal(rec, key)
}
