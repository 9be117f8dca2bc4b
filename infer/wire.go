package infer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// ProtocolID is the stream protocol of one query and its answer.
const ProtocolID = "/daitn/infer/1.0.0"

// serviceName is the resource-manager service the node gives a budget to.
const serviceName = "daitn.infer"

// Limits on what a peer may make us read or decode.
const (
	// MaxInputBytes bounds the input of one query (an image or raw values).
	MaxInputBytes = 1 << 20
	// MaxRequestBytes bounds a request frame: the input plus the fields
	// around it.
	MaxRequestBytes = MaxInputBytes + 4<<10
	// MaxResponseBytes bounds a response frame.
	MaxResponseBytes = 16 << 10
	// MaxClasses bounds the probabilities in an answer; models with more
	// classes are not served.
	MaxClasses = 1024
	maxIDLen   = 128
	maxSkill   = 64
	maxErrText = 1024
)

// Format names how a query's input is encoded.
type Format string

// Input formats. FormatAuto detects PNG and JPEG by their magic bytes and
// takes anything else as raw float32 values.
const (
	FormatAuto Format = ""
	FormatPNG  Format = "png"
	FormatJPEG Format = "jpeg"
	FormatF32  Format = "f32"
)

func (f Format) valid() bool {
	switch f {
	case FormatAuto, FormatPNG, FormatJPEG, FormatF32:
		return true
	}
	return false
}

// Request is the one frame a client sends on a stream: which model (a
// descriptor slot or version id of one of the host's own model
// descriptors), or, if Model is empty, any of the host's models with Skill;
// and the input.
type Request struct {
	Model  string `cbor:"1,keyasint,omitempty" json:"model,omitempty"`
	Skill  string `cbor:"2,keyasint,omitempty" json:"skill,omitempty"`
	Format Format `cbor:"3,keyasint,omitempty" json:"format,omitempty"`
	Input  []byte `cbor:"4,keyasint" json:"input"`
}

// Status is the outcome a host reports.
type Status string

// Statuses. Only StatusOK carries a prediction; every other one carries a
// reason in Response.Error.
const (
	StatusOK           Status = "ok"
	StatusBusy         Status = "busy"          // every query slot taken; ask another host
	StatusBadInput     Status = "bad-input"     // the input or the request is wrong; asking elsewhere will not help
	StatusUnknownModel Status = "unknown-model" // not one of the host's models (a stale map)
	StatusUnavailable  Status = "unavailable"   // the model's weights are missing or unloadable here
	StatusError        Status = "error"         // the host failed (closing, internal error)
)

func (s Status) valid() bool {
	switch s {
	case StatusOK, StatusBusy, StatusBadInput, StatusUnknownModel, StatusUnavailable, StatusError:
		return true
	}
	return false
}

// Response is the one frame a host answers with.
type Response struct {
	Status Status    `cbor:"1,keyasint" json:"status"`
	Error  string    `cbor:"2,keyasint,omitempty" json:"error,omitempty"`
	Class  int       `cbor:"3,keyasint,omitempty" json:"class"`
	Probs  []float32 `cbor:"4,keyasint,omitempty" json:"probs,omitempty"`
	// Model is the slot id of the descriptor that answered, Version the
	// id of the descriptor version it was loaded from.
	Model   string `cbor:"5,keyasint,omitempty" json:"model,omitempty"`
	Version string `cbor:"6,keyasint,omitempty" json:"version,omitempty"`
	// HostMicros is the time the host spent on the query, queueing included.
	HostMicros int64 `cbor:"7,keyasint,omitempty" json:"host_us"`
	// Name is the model descriptor's name, for people.
	Name string `cbor:"8,keyasint,omitempty" json:"name,omitempty"`
}

// ErrBadMessage is wrapped by every error decoding a peer's frame.
var ErrBadMessage = errors.New("invalid inference message")

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
		MaxArrayElements:  MaxClasses,
		MaxMapPairs:       16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, a...))
}

// Validate checks a request's fields against the limits.
func (r *Request) Validate() error {
	switch {
	case len(r.Model) > maxIDLen:
		return badf("request field model: %d bytes, at most %d", len(r.Model), maxIDLen)
	case len(r.Skill) > maxSkill:
		return badf("request field skill: %d bytes, at most %d", len(r.Skill), maxSkill)
	case r.Model == "" && r.Skill == "":
		return badf("request names neither a model nor a skill")
	case !utf8.ValidString(r.Model) || !utf8.ValidString(r.Skill):
		return badf("request field model or skill is not UTF-8")
	case !r.Format.valid():
		return badf("request field format=%q: want png, jpeg, f32 or empty (detect)", truncate(string(r.Format), 32))
	case len(r.Input) == 0:
		return badf("request field input is empty")
	case len(r.Input) > MaxInputBytes:
		return badf("request field input: %d bytes, at most %d", len(r.Input), MaxInputBytes)
	}
	return nil
}

// Validate checks a response's fields: a prediction must be a probability
// vector with the class inside it, an error must say why.
func (r *Response) Validate() error {
	if !r.Status.valid() {
		return badf("response field status=%q: unknown", truncate(string(r.Status), 32))
	}
	if len(r.Error) > maxErrText || len(r.Model) > maxIDLen || len(r.Version) > maxIDLen || len(r.Name) > maxIDLen {
		return badf("response field error, model, version or name too long")
	}
	if r.HostMicros < 0 {
		return badf("response field host_us=%d: negative", r.HostMicros)
	}
	if r.Status != StatusOK {
		if r.Error == "" {
			return badf("response status %s without a reason", r.Status)
		}
		return nil
	}
	if len(r.Probs) < 2 || len(r.Probs) > MaxClasses {
		return badf("response field probs: %d values, want 2..%d", len(r.Probs), MaxClasses)
	}
	if r.Class < 0 || r.Class >= len(r.Probs) {
		return badf("response field class=%d: want 0..%d", r.Class, len(r.Probs)-1)
	}
	for i, p := range r.Probs {
		if !(p >= 0 && p <= 1) {
			return badf("response field probs[%d]=%v: want 0..1", i, p)
		}
	}
	if r.Model == "" {
		return badf("response field model is empty")
	}
	return nil
}

// MarshalRequest encodes r (deterministic CBOR) after validating it.
func MarshalRequest(r *Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(r)
}

// UnmarshalRequest decodes and validates a request frame body.
func UnmarshalRequest(b []byte) (*Request, error) {
	if len(b) > MaxRequestBytes {
		return nil, badf("request of %d bytes, at most %d", len(b), MaxRequestBytes)
	}
	var r Request
	if err := decMode.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: decode request: %w", ErrBadMessage, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// MarshalResponse encodes r (deterministic CBOR) after validating it.
func MarshalResponse(r *Response) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return encMode.Marshal(r)
}

// UnmarshalResponse decodes and validates a response frame body.
func UnmarshalResponse(b []byte) (*Response, error) {
	if len(b) > MaxResponseBytes {
		return nil, badf("response of %d bytes, at most %d", len(b), MaxResponseBytes)
	}
	var r Response
	if err := decMode.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: decode response: %w", ErrBadMessage, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// writeFrame writes a uvarint length and the body in one write, so a frame
// is not split into two stream writes.
func writeFrame(w io.Writer, body []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(body)))
	_, err := w.Write(append(hdr[:n:n], body...))
	return err
}

// errFrameTooBig is wrapped when a frame announces more than the limit.
var errFrameTooBig = errors.New("frame too big")

// readFrameLen reads a frame's length and refuses one over limit before
// anything is allocated.
func readFrameLen(r *bufio.Reader, limit int) (int, error) {
	n, err := readUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("read frame length: %w", err)
	}
	if n > uint64(limit) {
		return 0, fmt.Errorf("frame of %d bytes, at most %d accepted: %w", n, limit, errFrameTooBig)
	}
	return int(n), nil
}

// readUvarint is binary.ReadUvarint that also refuses padded encodings
// (a trailing 0x00 group), so a length has exactly one encoding on the wire.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, errors.New("length overflows 64 bits")
			}
			if b == 0 && i > 0 {
				return 0, errors.New("length is not minimally encoded")
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, errors.New("length overflows 64 bits")
}

// readFrame reads one whole frame of at most limit bytes.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := readFrameLen(r, limit)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read frame body: %w", err)
	}
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// clip shortens a reason to what fits in a response and makes it valid
// UTF-8 (the replacement is one byte, so it never grows).
func clip(s string) string {
	if len(s) > maxErrText {
		s = s[:maxErrText]
	}
	return strings.ToValidUTF8(s, "?")
}
