package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
)

// Protocol and resource-manager service name.
const (
	Protocol    = "/daitn/transfer/1.0.0"
	ServiceName = "daitn.transfer"
)

// Limits of the message framing.
const (
	MaxWants          = 1024     // CIDs in one want request
	MaxRequestHeader  = 64 << 10 // a request frame
	MaxResponseHeader = 1 << 10  // a response frame (the block follows it)
	MaxMsgLen         = 256      // free text in a response
)

// Kind of a request or response.
type Kind uint8

// Request kinds.
const (
	KindWant Kind = 1 // send me these blocks of Root
	KindHave Kind = 2 // do you have Root?
)

// Response kinds.
const (
	KindBlock    Kind = 1 // Len bytes of block CID follow
	KindNotFound Kind = 2 // I do not have CID
	KindRefused  Kind = 3 // policy: you may not have CID / Root
	KindBusy     Kind = 4 // resource limit; ask again later or elsewhere
	KindHaveResp Kind = 5 // answer to a have request, in Have
	KindError    Kind = 6 // the request was malformed; the stream ends
)

// HaveStatus answers a have request.
type HaveStatus uint8

const (
	HaveNone     HaveStatus = 0
	HaveFull     HaveStatus = 1 // every block of the root
	HavePartial  HaveStatus = 2 // the manifest and some blocks
	HaveRefused  HaveStatus = 3 // the root is private and you are not allowed
	maxHaveValue            = HaveRefused
)

// Request is one client message.
type Request struct {
	Kind Kind
	Root cid.Cid   // always set: policy is decided per root
	CIDs []cid.Cid // for KindWant: 1..MaxWants blocks
}

// Response is one server message; for KindBlock, Len bytes follow it.
type Response struct {
	Kind Kind
	CID  cid.Cid // the block or root it answers
	Len  int
	Have HaveStatus
	Msg  string
	// Private, on a have answer, says the root is private at the holder:
	// an allowed fetcher should keep it private too, not re-serve it.
	Private bool
}

type wireRequest struct {
	Kind Kind     `cbor:"1,keyasint"`
	Root []byte   `cbor:"2,keyasint"`
	CIDs [][]byte `cbor:"3,keyasint,omitempty"`
}

type wireResponse struct {
	Kind Kind       `cbor:"1,keyasint"`
	CID  []byte     `cbor:"2,keyasint"`
	Len  uint32     `cbor:"3,keyasint,omitempty"`
	Have HaveStatus `cbor:"4,keyasint,omitempty"`
	Msg  string     `cbor:"5,keyasint,omitempty"`
	Priv bool       `cbor:"6,keyasint,omitempty"`
}

var msgDec cbor.DecMode

func init() {
	var err error
	if msgDec, err = (cbor.DecOptions{
		MaxArrayElements:  MaxWants + 1,
		MaxMapPairs:       16,
		MaxNestedLevels:   4,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// Validate checks a request against the protocol's rules.
func (r *Request) Validate() error {
	if err := CheckCID(r.Root); err != nil {
		return fmt.Errorf("request root: %w", err)
	}
	switch r.Kind {
	case KindWant:
		if len(r.CIDs) == 0 || len(r.CIDs) > MaxWants {
			return fmt.Errorf("want request has %d CIDs, want 1..%d", len(r.CIDs), MaxWants)
		}
		for i, c := range r.CIDs {
			if err := CheckCID(c); err != nil {
				return fmt.Errorf("want request cid %d: %w", i, err)
			}
		}
	case KindHave:
		if len(r.CIDs) != 0 {
			return fmt.Errorf("have request carries %d CIDs, want 0", len(r.CIDs))
		}
	default:
		return fmt.Errorf("request kind %d, want 1 (want) or 2 (have)", r.Kind)
	}
	return nil
}

// Validate checks a response against the protocol's rules.
func (r *Response) Validate() error {
	if err := CheckCID(r.CID); err != nil {
		return fmt.Errorf("response cid: %w", err)
	}
	if len(r.Msg) > MaxMsgLen {
		return fmt.Errorf("response message is %d bytes, limit %d", len(r.Msg), MaxMsgLen)
	}
	switch r.Kind {
	case KindBlock:
		if r.Len < 0 || r.Len > MaxBlockSize {
			return fmt.Errorf("block length %d, want 0..%d", r.Len, MaxBlockSize)
		}
	case KindNotFound, KindRefused, KindBusy, KindError:
	case KindHaveResp:
		if r.Have > maxHaveValue {
			return fmt.Errorf("have status %d, want 0..%d", r.Have, maxHaveValue)
		}
	default:
		return fmt.Errorf("response kind %d, want 1..6", r.Kind)
	}
	if r.Private && r.Kind != KindHaveResp {
		return fmt.Errorf("response kind %d carries the private flag, only have answers may", r.Kind)
	}
	if r.Kind != KindBlock && r.Len != 0 {
		return fmt.Errorf("response kind %d carries length %d", r.Kind, r.Len)
	}
	return nil
}

func writeFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(append(hdr[:n:n], b...)); err != nil {
		return err
	}
	return nil
}

// ErrFrameTooLarge reports a frame over its limit.
var ErrFrameTooLarge = errors.New("frame too large")

func readFrame(r *bufio.Reader, limit int, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n == 0 || n > uint64(limit) {
		return nil, fmt.Errorf("frame of %d bytes, want 1..%d: %w", n, limit, ErrFrameTooLarge)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("frame of %d bytes: %w", n, noEOF(err))
	}
	return buf, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// EncodeRequest returns the frame of a valid request.
func EncodeRequest(r *Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := wireRequest{Kind: r.Kind, Root: r.Root.Bytes()}
	for _, c := range r.CIDs {
		w.CIDs = append(w.CIDs, c.Bytes())
	}
	b, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if len(b) > MaxRequestHeader {
		return nil, fmt.Errorf("request of %d bytes, limit %d: %w", len(b), MaxRequestHeader, ErrFrameTooLarge)
	}
	return b, nil
}

// WriteRequest writes one request frame.
func WriteRequest(w io.Writer, r *Request) error {
	b, err := EncodeRequest(r)
	if err != nil {
		return err
	}
	return writeFrame(w, b)
}

// DecodeRequest parses one request frame body.
func DecodeRequest(b []byte) (*Request, error) {
	var w wireRequest
	if err := msgDec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	root, err := ParseCID(w.Root)
	if err != nil {
		return nil, fmt.Errorf("decode request: root: %w", err)
	}
	r := &Request{Kind: w.Kind, Root: root}
	if len(w.CIDs) > MaxWants {
		return nil, fmt.Errorf("decode request: %d CIDs, limit %d", len(w.CIDs), MaxWants)
	}
	for i, cb := range w.CIDs {
		c, err := ParseCID(cb)
		if err != nil {
			return nil, fmt.Errorf("decode request: cid %d: %w", i, err)
		}
		r.CIDs = append(r.CIDs, c)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	return r, nil
}

// ReadRequest reads and validates one request frame.
func ReadRequest(r *bufio.Reader) (*Request, error) {
	b, err := readFrame(r, MaxRequestHeader, nil)
	if err != nil {
		return nil, err
	}
	return DecodeRequest(b)
}

// EncodeResponse returns the frame body of a valid response.
func EncodeResponse(r *Response) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(wireResponse{Kind: r.Kind, CID: r.CID.Bytes(), Len: uint32(r.Len), Have: r.Have, Msg: r.Msg, Priv: r.Private})
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return b, nil
}

// WriteResponse writes one response frame, followed by block when r is a
// block response (len(block) must equal r.Len).
func WriteResponse(w io.Writer, r *Response, block []byte) error {
	if r.Kind == KindBlock && len(block) != r.Len {
		return fmt.Errorf("block response says %d bytes, have %d", r.Len, len(block))
	}
	b, err := EncodeResponse(r)
	if err != nil {
		return err
	}
	if err := writeFrame(w, b); err != nil {
		return err
	}
	if len(block) > 0 {
		_, err = w.Write(block)
	}
	return err
}

// DecodeResponse parses one response frame body.
func DecodeResponse(b []byte) (*Response, error) {
	var w wireResponse
	if err := msgDec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	c, err := ParseCID(w.CID)
	if err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	r := &Response{Kind: w.Kind, CID: c, Len: int(w.Len), Have: w.Have, Msg: w.Msg, Private: w.Priv}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return r, nil
}

// ReadResponse reads one response header frame; for KindBlock the caller
// then reads exactly Len bytes from r.
func ReadResponse(r *bufio.Reader, buf []byte) (*Response, error) {
	b, err := readFrame(r, MaxResponseHeader, buf)
	if err != nil {
		return nil, err
	}
	return DecodeResponse(b)
}
