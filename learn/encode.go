package learn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The serialised model, all integers little-endian:
//
//	magic   "DAITNMDL"                 8 bytes
//	version uint16 = 1
//	nameLen uint8 (1..64)
//	layers  uint8 (2..MaxLayers)       number of entries in Sizes
//	name    nameLen bytes
//	sizes   layers × uint32
//	count   uint32                     number of parameters
//	params  count × float32 (IEEE 754, little-endian), in Params order
//
// The header depends only on the architecture, so parameter i always sits
// at ParamsOffset(arch)+4i: a change to a few weights changes only the
// bytes at their offsets, and content-defined chunking in transfer sends
// only the chunks around them.
const (
	modelMagic   = "DAITNMDL"
	modelVersion = 1
)

// MaxModelBytes bounds what Unmarshal accepts: the largest header plus
// MaxParams float32s.
const MaxModelBytes = 12 + 64 + 4*MaxLayers + 4 + 4*MaxParams

// ErrEncoding is wrapped by every Unmarshal error about the bytes.
var ErrEncoding = errors.New("invalid model encoding")

// ParamsOffset is where the parameters start in Marshal's output.
func ParamsOffset(a Arch) int { return 12 + len(a.Name) + 4*len(a.Sizes) + 4 }

// Marshal serialises m deterministically: the same model always gives the
// same bytes. It fails only for a malformed model or non-finite parameters.
func Marshal(m *Model) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	a := m.Arch
	b := make([]byte, ParamsOffset(a)+4*len(m.Params))
	copy(b, modelMagic)
	binary.LittleEndian.PutUint16(b[8:], modelVersion)
	b[10] = byte(len(a.Name))
	b[11] = byte(len(a.Sizes))
	o := 12 + copy(b[12:], a.Name)
	for _, s := range a.Sizes {
		binary.LittleEndian.PutUint32(b[o:], uint32(s))
		o += 4
	}
	binary.LittleEndian.PutUint32(b[o:], uint32(len(m.Params)))
	o += 4
	for i, p := range m.Params {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return nil, fmt.Errorf("marshal model: %w: parameter %d is %v", ErrNonFinite, i, p)
		}
		binary.LittleEndian.PutUint32(b[o:], math.Float32bits(p))
		o += 4
	}
	return b, nil
}

// Unmarshal parses Marshal's output. It accepts only registered
// architectures with their registered shape, exactly the announced number of
// parameters, all finite, and nothing after them; so anything it accepts
// re-marshals to the same bytes.
func Unmarshal(b []byte) (*Model, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("unmarshal model: %w: %s", ErrEncoding, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxModelBytes {
		return nil, bad("%d bytes, limit is %d", len(b), MaxModelBytes)
	}
	if len(b) < 12 {
		return nil, bad("%d bytes, shorter than the 12-byte header", len(b))
	}
	if string(b[:8]) != modelMagic {
		return nil, bad("magic %q, want %q", b[:8], modelMagic)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != modelVersion {
		return nil, bad("version %d, this node reads version %d", v, modelVersion)
	}
	nameLen, layers := int(b[10]), int(b[11])
	if nameLen < 1 || nameLen > 64 {
		return nil, bad("architecture name length %d, must be 1..64", nameLen)
	}
	if layers < 2 || layers > MaxLayers {
		return nil, bad("%d layer sizes, must be 2..%d", layers, MaxLayers)
	}
	hdr := 12 + nameLen + 4*layers + 4
	if len(b) < hdr {
		return nil, bad("truncated header: %d bytes, need %d", len(b), hdr)
	}
	name := string(b[12 : 12+nameLen])
	sizes := make([]int, layers)
	o := 12 + nameLen
	for i := range sizes {
		sizes[i] = int(binary.LittleEndian.Uint32(b[o:]))
		o += 4
	}
	count := int(binary.LittleEndian.Uint32(b[o:]))
	o += 4
	a, err := LookupArch(name)
	if err != nil {
		return nil, fmt.Errorf("unmarshal model: %w: %w", ErrEncoding, err)
	}
	if got := (Arch{Name: name, Sizes: sizes}); !got.sameShape(a) {
		return nil, bad("shape %s does not match the registered %s", got, a)
	}
	if count != a.NumParams() {
		return nil, bad("%d parameters announced, %s has %d", count, a, a.NumParams())
	}
	if rest := len(b) - o; rest != 4*count {
		return nil, bad("%d bytes of parameters, %s needs exactly %d", rest, a, 4*count)
	}
	m := &Model{Arch: a, Params: make([]float32, count)}
	for i := range m.Params {
		p := math.Float32frombits(binary.LittleEndian.Uint32(b[o:]))
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return nil, fmt.Errorf("unmarshal model: %w: %w: parameter %d is %v", ErrEncoding, ErrNonFinite, i, p)
		}
		m.Params[i] = p
		o += 4
	}
	return m, nil
}

// EncodedSize is the exact length of Marshal's output for architecture a:
// a reader fetching a model of a known architecture can refuse anything
// longer before reading it.
func EncodedSize(a Arch) int { return ParamsOffset(a) + 4*a.NumParams() }

// UnmarshalAs is Unmarshal that also requires the model to be of the
// architecture named arch, as an aggregator does for the updates of a job.
func UnmarshalAs(b []byte, arch string) (*Model, error) {
	want, err := LookupArch(arch)
	if err != nil {
		return nil, fmt.Errorf("unmarshal model: %w", err)
	}
	if len(b) > EncodedSize(want) {
		return nil, fmt.Errorf("unmarshal model: %w: %d bytes, a %s model is %d", ErrEncoding, len(b), want, EncodedSize(want))
	}
	m, err := Unmarshal(b)
	if err != nil {
		return nil, err
	}
	if m.Arch.Name != want.Name {
		return nil, fmt.Errorf("unmarshal model: %w: architecture %s, want %s", ErrEncoding, m.Arch.Name, want.Name)
	}
	return m, nil
}
