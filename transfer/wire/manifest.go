package wire

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
)

// Limits of the manifest format. A manifest is a block, so it is also
// bounded by MaxBlockSize.
const (
	MaxChunkSize      = 1 << 20 // a data chunk (the chunker's Max)
	MaxBlockSize      = 4 << 20 // any block: a chunk or a manifest
	MaxManifestChunks = 100_000 // ~25 GiB per file at the 256 KiB average
	MaxDirEntries     = 10_000
	MaxNameLen        = 255
	MaxTotalSize      = 1 << 44 // 16 TiB: anything larger is a lie
	MaxDepth          = 32      // nesting of directories
)

// Type of a manifest.
type Type uint8

const (
	TypeFile Type = 1
	TypeDir  Type = 2
)

func (t Type) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Chunk is one data chunk of a file, in order.
type Chunk struct {
	CID  cid.Cid
	Size uint32
}

// Entry is one child of a directory; CID is the child's manifest.
type Entry struct {
	Name string
	CID  cid.Cid
	Type Type
	Size uint64
}

// Manifest lists a file's chunks or a directory's entries. The root CID of
// anything added is the CID of its manifest.
type Manifest struct {
	Type    Type
	Size    uint64 // file bytes, or the sum of the entries' sizes
	Chunks  []Chunk
	Entries []Entry
}

type wireChunk struct {
	_    struct{} `cbor:",toarray"`
	CID  []byte
	Size uint32
}

type wireEntry struct {
	_    struct{} `cbor:",toarray"`
	Name string
	CID  []byte
	Type Type
	Size uint64
}

type wireManifest struct {
	Version uint8       `cbor:"1,keyasint"`
	Type    Type        `cbor:"2,keyasint"`
	Size    uint64      `cbor:"3,keyasint"`
	Chunks  []wireChunk `cbor:"4,keyasint,omitempty"`
	Entries []wireEntry `cbor:"5,keyasint,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{
		MaxArrayElements:  MaxManifestChunks + 1,
		MaxMapPairs:       16,
		MaxNestedLevels:   6,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// ErrBadManifest wraps every reason a manifest is rejected.
var ErrBadManifest = errors.New("bad manifest")

// Encode validates m and returns its deterministic CBOR bytes.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(cid.Undef); err != nil {
		return nil, err
	}
	w := wireManifest{Version: 1, Type: m.Type, Size: m.Size}
	for _, c := range m.Chunks {
		w.Chunks = append(w.Chunks, wireChunk{CID: c.CID.Bytes(), Size: c.Size})
	}
	for _, e := range m.Entries {
		w.Entries = append(w.Entries, wireEntry{Name: e.Name, CID: e.CID.Bytes(), Type: e.Type, Size: e.Size})
	}
	b, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if len(b) > MaxBlockSize {
		return nil, fmt.Errorf("%w: encoded size %d bytes, limit %d", ErrBadManifest, len(b), MaxBlockSize)
	}
	return b, nil
}

// DecodeManifest parses and validates a manifest whose CID is self (self
// may be cid.Undef when unknown).
func DecodeManifest(self cid.Cid, b []byte) (*Manifest, error) {
	if len(b) > MaxBlockSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadManifest, len(b), MaxBlockSize)
	}
	var w wireManifest
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: cbor: %v", ErrBadManifest, err)
	}
	if w.Version != 1 {
		return nil, fmt.Errorf("%w: version %d, want 1", ErrBadManifest, w.Version)
	}
	m := &Manifest{Type: w.Type, Size: w.Size}
	if len(w.Chunks) > MaxManifestChunks {
		return nil, fmt.Errorf("%w: %d chunks, limit %d", ErrBadManifest, len(w.Chunks), MaxManifestChunks)
	}
	if len(w.Entries) > MaxDirEntries {
		return nil, fmt.Errorf("%w: %d entries, limit %d", ErrBadManifest, len(w.Entries), MaxDirEntries)
	}
	for i, c := range w.Chunks {
		id, err := ParseCID(c.CID)
		if err != nil {
			return nil, fmt.Errorf("%w: chunk %d: %v", ErrBadManifest, i, err)
		}
		m.Chunks = append(m.Chunks, Chunk{CID: id, Size: c.Size})
	}
	for i, e := range w.Entries {
		id, err := ParseCID(e.CID)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d (%q): %v", ErrBadManifest, i, e.Name, err)
		}
		m.Entries = append(m.Entries, Entry{Name: e.Name, CID: id, Type: e.Type, Size: e.Size})
	}
	if err := m.Validate(self); err != nil {
		return nil, err
	}
	return m, nil
}

// ValidName reports whether name is safe as one path element on every OS we
// export to: no separators, no "." or "..", no NUL, valid UTF-8.
func ValidName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q is not allowed", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name is %d bytes, limit %d", len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("name %q contains '/', '\\' or NUL", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	}
	return nil
}

// Validate checks the rules every manifest must satisfy. self, if defined,
// must not appear among the children.
func (m *Manifest) Validate(self cid.Cid) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadManifest}, a...)...)
	}
	if m.Size > MaxTotalSize {
		return bad("size %d bytes, limit %d", m.Size, uint64(MaxTotalSize))
	}
	switch m.Type {
	case TypeFile:
		if len(m.Entries) != 0 {
			return bad("file manifest has %d directory entries", len(m.Entries))
		}
		if len(m.Chunks) > MaxManifestChunks {
			return bad("%d chunks, limit %d", len(m.Chunks), MaxManifestChunks)
		}
		var sum uint64
		for i, c := range m.Chunks {
			if c.CID.Type() != CodecRaw {
				return bad("chunk %d: %s is not a raw chunk CID", i, c.CID)
			}
			if err := CheckCID(c.CID); err != nil {
				return bad("chunk %d: %v", i, err)
			}
			if c.Size == 0 || c.Size > MaxChunkSize {
				return bad("chunk %d: size %d, want 1..%d", i, c.Size, MaxChunkSize)
			}
			sum += uint64(c.Size)
		}
		if sum != m.Size {
			return bad("chunk sizes add up to %d, manifest says %d", sum, m.Size)
		}
	case TypeDir:
		if len(m.Chunks) != 0 {
			return bad("directory manifest has %d chunks", len(m.Chunks))
		}
		if len(m.Entries) > MaxDirEntries {
			return bad("%d entries, limit %d", len(m.Entries), MaxDirEntries)
		}
		var sum uint64
		for i, e := range m.Entries {
			if err := ValidName(e.Name); err != nil {
				return bad("entry %d: %v", i, err)
			}
			if i > 0 && m.Entries[i-1].Name >= e.Name {
				return bad("entry %d: %q not after %q (names must be sorted and unique)", i, e.Name, m.Entries[i-1].Name)
			}
			if e.CID.Type() != CodecManifest {
				return bad("entry %q: %s is not a manifest CID", e.Name, e.CID)
			}
			if err := CheckCID(e.CID); err != nil {
				return bad("entry %q: %v", e.Name, err)
			}
			if self.Defined() && e.CID.Equals(self) {
				return bad("entry %q points to the manifest itself", e.Name)
			}
			if e.Type != TypeFile && e.Type != TypeDir {
				return bad("entry %q: type %d, want 1 (file) or 2 (dir)", e.Name, e.Type)
			}
			if e.Size > MaxTotalSize {
				return bad("entry %q: size %d, limit %d", e.Name, e.Size, uint64(MaxTotalSize))
			}
			sum += e.Size
		}
		if sum != m.Size {
			return bad("entry sizes add up to %d, manifest says %d", sum, m.Size)
		}
	default:
		return bad("type %d, want 1 (file) or 2 (dir)", m.Type)
	}
	return nil
}
