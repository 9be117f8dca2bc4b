package train

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/daitn/daitn/learn"
)

// Names on the wire.
const (
	// Pool is the task pool training rounds are posted on.
	Pool = "train"
	// KindRound is the task kind of one local training round.
	KindRound = "train-round"
	// EvalProtocol is the stream protocol an MPVU answers evaluation
	// requests on.
	EvalProtocol = "/daitn/mpvu/1.0.0"
)

// Limits on what a peer may make us decode.
const (
	MaxRoundTaskBytes   = 4 << 10
	MaxRoundResultBytes = 4 << 10
	MaxEvalRequestBytes = 4 << 10
	MaxEvalReportBytes  = 8 << 10
	maxIDLen            = 256
)

// ErrBadMessage is wrapped by every decoding error of a peer message.
var ErrBadMessage = errors.New("invalid training message")

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   4,
		MaxArrayElements:  64,
		MaxMapPairs:       32,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, a...))
}

// RoundTask is the input of a training-round task: which global model to
// fetch, which of the agent's datasets to train it on, and how.
type RoundTask struct {
	Job        string  `cbor:"1,keyasint" json:"job"`
	Round      int     `cbor:"2,keyasint" json:"round"`
	Arch       string  `cbor:"3,keyasint" json:"arch"`
	Model      string  `cbor:"4,keyasint" json:"model"` // transfer root CID of the global model
	Dataset    string  `cbor:"5,keyasint" json:"dataset"`
	Epochs     int     `cbor:"6,keyasint" json:"epochs"`
	Batch      int     `cbor:"7,keyasint" json:"batch"`
	LR         float64 `cbor:"8,keyasint" json:"lr"`
	Seed       uint64  `cbor:"9,keyasint" json:"seed"`
	MaxSamples int     `cbor:"10,keyasint,omitempty" json:"max_samples,omitempty"`
}

// Validate names the first bad field.
func (t *RoundTask) Validate() error {
	switch {
	case t.Job == "" || len(t.Job) > maxIDLen:
		return badf("round task job %q: want 1..%d characters", trunc(t.Job), maxIDLen)
	case t.Round < 1 || t.Round > MaxRounds:
		return badf("round task round %d: want 1..%d", t.Round, MaxRounds)
	case t.Dataset == "" || len(t.Dataset) > maxIDLen:
		return badf("round task dataset %q: want 1..%d characters", trunc(t.Dataset), maxIDLen)
	case t.Epochs < 1 || t.Epochs > MaxEpochs:
		return badf("round task epochs %d: want 1..%d", t.Epochs, MaxEpochs)
	case t.Batch < 0 || t.Batch > MaxBatch:
		return badf("round task batch %d: want 0..%d", t.Batch, MaxBatch)
	case !(t.LR > 0 && t.LR <= MaxLR):
		return badf("round task lr %v: want in (0, %v]", t.LR, MaxLR)
	case t.MaxSamples < 0:
		return badf("round task max_samples %d: want >= 0", t.MaxSamples)
	}
	if _, err := learn.LookupArch(t.Arch); err != nil {
		return badf("round task arch %q: %v", trunc(t.Arch), err)
	}
	if _, err := cid.Decode(t.Model); err != nil {
		return badf("round task model %q: not a CID: %v", trunc(t.Model), err)
	}
	return nil
}

// MarshalRoundTask encodes t after validating it.
func MarshalRoundTask(t *RoundTask) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(t)
}

// UnmarshalRoundTask decodes and validates a round task.
func UnmarshalRoundTask(b []byte) (*RoundTask, error) {
	if len(b) > MaxRoundTaskBytes {
		return nil, badf("round task is %d bytes, at most %d accepted", len(b), MaxRoundTaskBytes)
	}
	var t RoundTask
	if err := decMode.Unmarshal(b, &t); err != nil {
		return nil, badf("round task: %v", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// RoundResult is the output of a training-round task: where the update is
// and what it cost. The update itself travels by CID through transfer.
type RoundResult struct {
	Update       string  `cbor:"1,keyasint" json:"update"` // transfer root CID
	Samples      int     `cbor:"2,keyasint" json:"samples"`
	Loss         float64 `cbor:"3,keyasint" json:"loss"`
	TrainMs      int64   `cbor:"4,keyasint" json:"train_ms"`
	FetchMs      int64   `cbor:"5,keyasint" json:"fetch_ms"`
	FetchedBytes int64   `cbor:"6,keyasint" json:"fetched_bytes"`
}

// Validate names the first bad field.
func (r *RoundResult) Validate() error {
	if _, err := cid.Decode(r.Update); err != nil {
		return badf("round result update %q: not a CID: %v", trunc(r.Update), err)
	}
	switch {
	case r.Samples < 1 || r.Samples > 1<<30:
		return badf("round result samples %d: want 1..%d", r.Samples, 1<<30)
	case math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) || r.Loss < 0:
		return badf("round result loss %v: want a finite number >= 0", r.Loss)
	case r.TrainMs < 0 || r.FetchMs < 0 || r.FetchedBytes < 0:
		return badf("round result timings and byte counts must be >= 0")
	}
	return nil
}

// MarshalRoundResult encodes r after validating it.
func MarshalRoundResult(r *RoundResult) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(r)
}

// UnmarshalRoundResult decodes and validates a round result.
func UnmarshalRoundResult(b []byte) (*RoundResult, error) {
	if len(b) > MaxRoundResultBytes {
		return nil, badf("round result is %d bytes, at most %d accepted", len(b), MaxRoundResultBytes)
	}
	var r RoundResult
	if err := decMode.Unmarshal(b, &r); err != nil {
		return nil, badf("round result: %v", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// EvalRequest asks an MPVU to evaluate a model. Nonce binds the signed
// report to this request so an old report cannot be replayed for it.
type EvalRequest struct {
	Model string `cbor:"1,keyasint" json:"model"`
	Arch  string `cbor:"2,keyasint" json:"arch"`
	Task  string `cbor:"3,keyasint" json:"task"`
	Job   string `cbor:"4,keyasint,omitempty" json:"job,omitempty"`
	Round int    `cbor:"5,keyasint,omitempty" json:"round,omitempty"`
	Nonce []byte `cbor:"6,keyasint" json:"nonce"`
}

// Validate names the first bad field.
func (r *EvalRequest) Validate() error {
	if _, err := cid.Decode(r.Model); err != nil {
		return badf("eval request model %q: not a CID: %v", trunc(r.Model), err)
	}
	if _, err := learn.LookupArch(r.Arch); err != nil {
		return badf("eval request arch %q: %v", trunc(r.Arch), err)
	}
	switch {
	case len(r.Task) > maxIDLen:
		return badf("eval request task: at most %d characters", maxIDLen)
	case len(r.Job) > maxIDLen:
		return badf("eval request job: at most %d characters", maxIDLen)
	case r.Round < 0 || r.Round > MaxRounds:
		return badf("eval request round %d: want 0..%d", r.Round, MaxRounds)
	case len(r.Nonce) < 8 || len(r.Nonce) > 64:
		return badf("eval request nonce: %d bytes, want 8..64", len(r.Nonce))
	}
	return nil
}

// UnmarshalEvalRequest decodes and validates an evaluation request.
func UnmarshalEvalRequest(b []byte) (*EvalRequest, error) {
	if len(b) > MaxEvalRequestBytes {
		return nil, badf("eval request is %d bytes, at most %d accepted", len(b), MaxEvalRequestBytes)
	}
	var r EvalRequest
	if err := decMode.Unmarshal(b, &r); err != nil {
		return nil, badf("eval request: %v", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// EvalReport is what an MPVU measured for one model on its held-out set,
// signed by the MPVU as a libp2p record.Envelope with its own domain and
// payload type, so the signature cannot be replayed as anything else.
type EvalReport struct {
	Model     string  `cbor:"1,keyasint" json:"model"`
	Arch      string  `cbor:"2,keyasint" json:"arch"`
	Testset   string  `cbor:"3,keyasint" json:"testset"`
	Accuracy  float64 `cbor:"4,keyasint" json:"accuracy"`
	Loss      float64 `cbor:"5,keyasint" json:"loss"`
	Samples   int     `cbor:"6,keyasint" json:"samples"`
	Time      int64   `cbor:"7,keyasint" json:"time"` // Unix milliseconds
	Evaluator string  `cbor:"8,keyasint" json:"evaluator"`
	Nonce     []byte  `cbor:"9,keyasint" json:"nonce"`
}

// EvalReportDomain and EvalReportCodec are the envelope's signature domain
// and payload type.
const EvalReportDomain = "daitn-eval-report"

// EvalReportCodec is the envelope payload type of an evaluation report.
var EvalReportCodec = []byte("/daitn/eval-report/1")

// Domain implements record.Record.
func (r *EvalReport) Domain() string { return EvalReportDomain }

// Codec implements record.Record.
func (r *EvalReport) Codec() []byte { return EvalReportCodec }

// MarshalRecord implements record.Record.
func (r *EvalReport) MarshalRecord() ([]byte, error) { return encMode.Marshal(r) }

// UnmarshalRecord implements record.Record.
func (r *EvalReport) UnmarshalRecord(b []byte) error {
	if len(b) > MaxEvalReportBytes {
		return badf("eval report payload is %d bytes, at most %d accepted", len(b), MaxEvalReportBytes)
	}
	return decMode.Unmarshal(b, r)
}

// Validate names the first bad field.
func (r *EvalReport) Validate() error {
	if _, err := cid.Decode(r.Model); err != nil {
		return badf("eval report model %q: not a CID: %v", trunc(r.Model), err)
	}
	if _, err := peer.Decode(r.Evaluator); err != nil {
		return badf("eval report evaluator %q: not a peer ID: %v", trunc(r.Evaluator), err)
	}
	switch {
	case r.Arch == "" || len(r.Arch) > maxIDLen:
		return badf("eval report arch %q: want 1..%d characters", trunc(r.Arch), maxIDLen)
	case len(r.Testset) > maxIDLen:
		return badf("eval report testset: at most %d characters", maxIDLen)
	case !(r.Accuracy >= 0 && r.Accuracy <= 1):
		return badf("eval report accuracy %v: want 0..1", r.Accuracy)
	case math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) || r.Loss < 0:
		return badf("eval report loss %v: want a finite number >= 0", r.Loss)
	case r.Samples < 1:
		return badf("eval report samples %d: want >= 1", r.Samples)
	case r.Time <= 0:
		return badf("eval report time %d: want Unix milliseconds > 0", r.Time)
	case len(r.Nonce) > 64:
		return badf("eval report nonce: %d bytes, at most 64", len(r.Nonce))
	}
	return nil
}

// SealEvalReport signs r with key; r.Evaluator must be key's peer.
func SealEvalReport(r *EvalReport, key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("seal eval report: %w", err)
	}
	if r.Evaluator != id.String() {
		return nil, fmt.Errorf("seal eval report: evaluator %s is not the signing key's peer %s", r.Evaluator, id)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("seal eval report: %w", err)
	}
	env, err := record.Seal(r, key)
	if err != nil {
		return nil, fmt.Errorf("seal eval report: %w", err)
	}
	return env.Marshal()
}

// OpenEvalReport verifies a signed evaluation report: size, envelope,
// payload type, signature under the report domain, fields, and that the
// signer is the evaluator it names.
func OpenEvalReport(b []byte) (*EvalReport, error) {
	if len(b) > MaxEvalReportBytes {
		return nil, badf("eval report is %d bytes, at most %d accepted", len(b), MaxEvalReportBytes)
	}
	var r EvalReport
	env, err := record.ConsumeTypedEnvelope(b, &r)
	if err != nil {
		return nil, badf("eval report envelope: %v", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, badf("eval report signer: %v", err)
	}
	if signer.String() != r.Evaluator {
		return nil, badf("eval report signed by %s but names evaluator %s", signer, r.Evaluator)
	}
	return &r, nil
}

// ErrNotChosenMPVU is returned by VerifyReport for a report that is
// validly signed but not by the MPVU the job chose.
var ErrNotChosenMPVU = errors.New("report not signed by the chosen MPVU")

// VerifyReport opens a signed report and checks it answers the request:
// signed by mpvu, for model root, with nonce.
func VerifyReport(b []byte, mpvu peer.ID, model string, nonce []byte) (*EvalReport, error) {
	r, err := OpenEvalReport(b)
	if err != nil {
		return nil, err
	}
	if r.Evaluator != mpvu.String() {
		return nil, fmt.Errorf("%w: signed by %s, want %s", ErrNotChosenMPVU, r.Evaluator, mpvu)
	}
	if r.Model != model {
		return nil, badf("eval report is for model %s, asked for %s", trunc(r.Model), model)
	}
	if string(r.Nonce) != string(nonce) {
		return nil, badf("eval report nonce does not match the request")
	}
	return r, nil
}

func trunc(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// VerifyReportSigner opens a stored report and checks it is signed by mpvu.
func VerifyReportSigner(b []byte, mpvu peer.ID) (*EvalReport, error) {
	r, err := OpenEvalReport(b)
	if err != nil {
		return nil, err
	}
	if r.Evaluator != mpvu.String() {
		return nil, fmt.Errorf("%w: signed by %s, want %s", ErrNotChosenMPVU, r.Evaluator, mpvu)
	}
	return r, nil
}
