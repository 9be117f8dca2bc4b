package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

func rawCID(s string) cid.Cid { return Sum(CodecRaw, []byte(s)) }

func fileManifest(t testing.TB, parts ...string) (*Manifest, []byte, cid.Cid) {
	t.Helper()
	m := &Manifest{Type: TypeFile}
	for _, p := range parts {
		m.Chunks = append(m.Chunks, Chunk{CID: rawCID(p), Size: uint32(len(p))})
		m.Size += uint64(len(p))
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return m, b, Sum(CodecManifest, b)
}

func TestVerify(t *testing.T) {
	c := rawCID("hello")
	if err := Verify(c, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := Verify(c, []byte("hellp")); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Verify(wrong bytes) = %v, want ErrHashMismatch", err)
	}
	m, _ := mh.Sum([]byte("hello"), mh.SHA2_256, -1)
	sc := cid.NewCidV1(CodecRaw, m)
	if err := Verify(sc, []byte("hello")); err != nil {
		t.Fatalf("sha2-256 cid: %v", err)
	}
}

func TestCheckCID(t *testing.T) {
	md5, _ := mh.Sum([]byte("x"), mh.MD5, -1)
	s256, _ := mh.Sum([]byte("x"), mh.SHA2_256, -1)
	for _, tc := range []struct {
		name string
		c    cid.Cid
		ok   bool
	}{
		{"raw blake3", rawCID("x"), true},
		{"manifest blake3", Sum(CodecManifest, []byte("x")), true},
		{"undef", cid.Undef, false},
		{"v0", cid.NewCidV0(s256), false},
		{"dag-pb codec", cid.NewCidV1(cid.DagProtobuf, s256), false},
		{"md5", cid.NewCidV1(CodecRaw, md5), false},
	} {
		if err := CheckCID(tc.c); (err == nil) != tc.ok {
			t.Errorf("%s: CheckCID = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestManifestRules(t *testing.T) {
	good := rawCID("a")
	sub := Sum(CodecManifest, []byte("sub"))
	for _, tc := range []struct {
		name string
		m    Manifest
		want string // substring of the error, "" for ok
	}{
		{"empty file", Manifest{Type: TypeFile}, ""},
		{"one chunk", Manifest{Type: TypeFile, Size: 1, Chunks: []Chunk{{good, 1}}}, ""},
		{"bad type", Manifest{Type: 9}, "type 9"},
		{"size mismatch", Manifest{Type: TypeFile, Size: 2, Chunks: []Chunk{{good, 1}}}, "add up to 1"},
		{"zero chunk", Manifest{Type: TypeFile, Chunks: []Chunk{{good, 0}}}, "size 0"},
		{"huge chunk", Manifest{Type: TypeFile, Size: 1 << 30, Chunks: []Chunk{{good, 1 << 30}}}, "want 1..1048576"},
		{"absurd total", Manifest{Type: TypeFile, Size: 1 << 60}, "limit"},
		{"chunk is manifest", Manifest{Type: TypeFile, Size: 1, Chunks: []Chunk{{sub, 1}}}, "not a raw chunk"},
		{"dir ok", Manifest{Type: TypeDir, Size: 5, Entries: []Entry{{"a", sub, TypeFile, 2}, {"b", sub, TypeFile, 3}}}, ""},
		{"dir unsorted", Manifest{Type: TypeDir, Entries: []Entry{{"b", sub, TypeFile, 0}, {"a", sub, TypeFile, 0}}}, "sorted"},
		{"dir dup", Manifest{Type: TypeDir, Entries: []Entry{{"a", sub, TypeFile, 0}, {"a", sub, TypeFile, 0}}}, "sorted and unique"},
		{"dir dotdot", Manifest{Type: TypeDir, Entries: []Entry{{"..", sub, TypeFile, 0}}}, "not allowed"},
		{"dir slash", Manifest{Type: TypeDir, Entries: []Entry{{"a/b", sub, TypeFile, 0}}}, "contains"},
		{"dir raw child", Manifest{Type: TypeDir, Entries: []Entry{{"a", good, TypeFile, 0}}}, "not a manifest"},
		{"dir with chunks", Manifest{Type: TypeDir, Chunks: []Chunk{{good, 1}}, Size: 1}, "has 1 chunks"},
	} {
		err := tc.m.Validate(cid.Undef)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: error %v does not wrap ErrBadManifest", tc.name, err)
		}
	}
}

func TestManifestSelfReference(t *testing.T) {
	sub := Sum(CodecManifest, []byte("sub"))
	m := Manifest{Type: TypeDir, Entries: []Entry{{"a", sub, TypeDir, 0}}}
	if err := m.Validate(sub); err == nil || !strings.Contains(err.Error(), "itself") {
		t.Fatalf("self-reference: %v", err)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m, b, c := fileManifest(t, "one", "two", "three")
	got, err := DecodeManifest(c, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != m.Size || len(got.Chunks) != 3 || !got.Chunks[2].CID.Equals(m.Chunks[2].CID) {
		t.Fatalf("round trip: %+v != %+v", got, m)
	}
	if _, err := DecodeManifest(c, b[:len(b)-1]); err == nil {
		t.Fatal("truncated manifest accepted")
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	root := Sum(CodecManifest, []byte("root"))
	req := &Request{Kind: KindWant, Root: root, CIDs: []cid.Cid{rawCID("a"), rawCID("b")}}
	if err := WriteRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	if err := WriteResponse(&buf, &Response{Kind: KindBlock, CID: rawCID("a"), Len: 1}, []byte("a")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&buf)
	got, err := ReadRequest(br)
	if err != nil || got.Kind != KindWant || len(got.CIDs) != 2 || !got.Root.Equals(root) {
		t.Fatalf("ReadRequest = %+v, %v", got, err)
	}
	resp, err := ReadResponse(br, nil)
	if err != nil || resp.Kind != KindBlock || resp.Len != 1 {
		t.Fatalf("ReadResponse = %+v, %v", resp, err)
	}
}

func TestRequestLimits(t *testing.T) {
	root := Sum(CodecManifest, []byte("root"))
	many := make([]cid.Cid, MaxWants+1)
	for i := range many {
		many[i] = rawCID(fmt.Sprint(i))
	}
	for _, tc := range []struct {
		name string
		r    Request
		want string
	}{
		{"too many", Request{Kind: KindWant, Root: root, CIDs: many}, "want 1..1024"},
		{"none", Request{Kind: KindWant, Root: root}, "has 0 CIDs"},
		{"no root", Request{Kind: KindWant, CIDs: many[:1]}, "root"},
		{"bad kind", Request{Kind: 7, Root: root}, "kind 7"},
		{"have with cids", Request{Kind: KindHave, Root: root, CIDs: many[:1]}, "want 0"},
	} {
		if _, err := EncodeRequest(&tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A frame claiming a giant length is refused before anything is read.
	br := bufio.NewReader(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}))
	if _, err := ReadRequest(br); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("giant frame: %v", err)
	}
	// A block length over the limit is refused.
	if _, err := EncodeResponse(&Response{Kind: KindBlock, CID: rawCID("x"), Len: MaxBlockSize + 1}); err == nil {
		t.Fatal("oversized block header accepted")
	}
}

// The decoders must never return something that would not re-encode to a
// valid message, and re-decoding must give the same thing.
func FuzzDecodeRequest(f *testing.F) {
	root := Sum(CodecManifest, []byte("root"))
	for _, r := range []*Request{
		{Kind: KindWant, Root: root, CIDs: []cid.Cid{rawCID("a")}},
		{Kind: KindHave, Root: root},
	} {
		b, _ := EncodeRequest(r)
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if len(r.CIDs) > MaxWants {
			t.Fatalf("decoded %d CIDs", len(r.CIDs))
		}
		b2, err := EncodeRequest(r)
		if err != nil {
			t.Fatalf("decoded request does not re-encode: %v", err)
		}
		r2, err := DecodeRequest(b2)
		if err != nil || r2.Kind != r.Kind || !r2.Root.Equals(r.Root) || len(r2.CIDs) != len(r.CIDs) {
			t.Fatalf("re-decode differs: %+v vs %+v (%v)", r2, r, err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, r := range []*Response{
		{Kind: KindBlock, CID: rawCID("a"), Len: 100},
		{Kind: KindHaveResp, CID: rawCID("a"), Have: HaveFull},
		{Kind: KindRefused, CID: rawCID("a"), Msg: "no"},
	} {
		b, _ := EncodeResponse(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			return
		}
		if r.Len < 0 || r.Len > MaxBlockSize || (r.Kind != KindBlock && r.Len != 0) {
			t.Fatalf("decoded length %d for kind %d", r.Len, r.Kind)
		}
		b2, err := EncodeResponse(r)
		if err != nil {
			t.Fatalf("decoded response does not re-encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			// Accepting a non-canonical encoding is fine, but it must
			// mean the same thing.
			r2, err := DecodeResponse(b2)
			if err != nil || *r2 != *r {
				t.Fatalf("re-decode differs: %+v vs %+v", r2, r)
			}
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	_, b, _ := fileManifest(f, "one", "two")
	f.Add(b)
	d := Manifest{Type: TypeDir, Size: 3, Entries: []Entry{{"x", Sum(CodecManifest, []byte("s")), TypeFile, 3}}}
	db, _ := d.Encode()
	f.Add(db)
	f.Fuzz(func(t *testing.T, b []byte) {
		self := Sum(CodecManifest, b)
		m, err := DecodeManifest(self, b)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error %v does not wrap ErrBadManifest", err)
			}
			return
		}
		if err := m.Validate(self); err != nil {
			t.Fatalf("decoded manifest is invalid: %v", err)
		}
		var sum uint64
		for _, c := range m.Chunks {
			sum += uint64(c.Size)
		}
		for _, e := range m.Entries {
			sum += e.Size
			if e.CID.Equals(self) {
				t.Fatal("decoded manifest references itself")
			}
		}
		if sum != m.Size {
			t.Fatalf("sizes add to %d, manifest says %d", sum, m.Size)
		}
		b2, err := m.Encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeManifest(cid.Undef, b2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// FuzzReadStream feeds arbitrary bytes to the framed readers a peer's
// stream goes through: every message that comes out is valid, and a block
// header never promises more than MaxBlockSize.
func FuzzReadStream(f *testing.F) {
	var buf bytes.Buffer
	root := Sum(CodecManifest, []byte("root"))
	_ = WriteRequest(&buf, &Request{Kind: KindHave, Root: root})
	_ = WriteRequest(&buf, &Request{Kind: KindWant, Root: root, CIDs: []cid.Cid{rawCID("a")}})
	f.Add(buf.Bytes(), false)
	buf.Reset()
	_ = WriteResponse(&buf, &Response{Kind: KindBlock, CID: rawCID("a"), Len: 1}, []byte("a"))
	_ = WriteResponse(&buf, &Response{Kind: KindNotFound, CID: rawCID("b")}, nil)
	f.Add(buf.Bytes(), true)
	f.Fuzz(func(t *testing.T, b []byte, responses bool) {
		br := bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 100; i++ {
			if responses {
				r, err := ReadResponse(br, nil)
				if err != nil {
					return
				}
				if err := r.Validate(); err != nil {
					t.Fatalf("ReadResponse returned an invalid response: %v", err)
				}
				if r.Kind == KindBlock {
					if _, err := br.Discard(r.Len); err != nil {
						return
					}
				}
				continue
			}
			r, err := ReadRequest(br)
			if err != nil {
				return
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("ReadRequest returned an invalid request: %v", err)
			}
		}
	})
}
