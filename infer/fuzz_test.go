package infer

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

func seedRequests(f *testing.F) {
	for _, r := range []*Request{
		{Model: "bafkslot", Format: FormatPNG, Input: []byte("\x89PNG\r\n\x1a\nxx")},
		{Skill: "classify-digits", Input: make([]byte, 3136)},
		{Model: "m", Skill: "s", Format: FormatF32, Input: []byte{0, 0, 128, 63}},
	} {
		b, err := MarshalRequest(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa1, 0x04, 0x5a, 0xff, 0xff, 0xff, 0xff})
}

// FuzzUnmarshalRequest: a request the host accepts is within every limit
// and re-encodes to bytes that decode to the same request.
func FuzzUnmarshalRequest(f *testing.F) {
	seedRequests(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalRequest(b)
		if err != nil {
			return
		}
		if len(r.Input) == 0 || len(r.Input) > MaxInputBytes || len(r.Model) > maxIDLen || (r.Model == "" && r.Skill == "") {
			t.Fatalf("accepted a request outside the limits: model %d bytes, input %d bytes", len(r.Model), len(r.Input))
		}
		again, err := MarshalRequest(r)
		if err != nil {
			t.Fatalf("accepted request does not re-encode: %v", err)
		}
		r2, err := UnmarshalRequest(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the request: %v\n%+v\n%+v", err, r, r2)
		}
	})
}

// FuzzUnmarshalResponse: an answer the client accepts is a probability
// vector with the class inside it, or a refusal with a reason.
func FuzzUnmarshalResponse(f *testing.F) {
	for _, r := range []*Response{
		{Status: StatusOK, Class: 3, Probs: []float32{0.1, 0.1, 0.1, 0.7}, Model: "slot", Version: "v", HostMicros: 120},
		{Status: StatusBusy, Error: "host busy"},
		{Status: StatusBadInput, Error: "image is 30x30"},
	} {
		b, err := MarshalResponse(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x01, 0x62, 'o', 'k'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalResponse(b)
		if err != nil {
			return
		}
		if r.Status == StatusOK {
			if r.Class < 0 || r.Class >= len(r.Probs) || len(r.Probs) > MaxClasses || r.Model == "" {
				t.Fatalf("accepted a bad prediction: class %d of %d probs, model %q", r.Class, len(r.Probs), r.Model)
			}
			for _, p := range r.Probs {
				if !(p >= 0 && p <= 1) {
					t.Fatalf("accepted probability %v", p)
				}
			}
		} else if r.Error == "" {
			t.Fatalf("accepted status %s without a reason", r.Status)
		}
		again, err := MarshalResponse(r)
		if err != nil {
			t.Fatalf("accepted response does not re-encode: %v", err)
		}
		if r2, err := UnmarshalResponse(again); err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the response: %v", err)
		}
	})
}

// FuzzReadFrame: the framing never yields more than the limit, never
// allocates for a length it refuses, and returns exactly the announced
// body.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = writeFrame(&buf, []byte("hello"))
	f.Add(buf.Bytes(), 16)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1<<20)
	f.Add([]byte{0x80}, 4)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		body, err := readFrame(bufio.NewReader(bytes.NewReader(b)), limit)
		if err != nil {
			return
		}
		if len(body) > limit {
			t.Fatalf("frame of %d bytes over the limit %d", len(body), limit)
		}
		var again bytes.Buffer
		_ = writeFrame(&again, body)
		if !bytes.HasPrefix(b, again.Bytes()) {
			t.Fatal("frame does not re-encode to the bytes it was read from")
		}
	})
}

// FuzzDecodeInput: whatever a peer sends as input, the host either
// refuses it with ErrBadInput or gets exactly 784 values in [0,1].
func FuzzDecodeInput(f *testing.F) {
	x := make([]float32, 784)
	for i := range x {
		x[i] = float32(i%256) / 255
	}
	var png bytes.Buffer
	_ = EncodePNG(&png, x)
	f.Add(png.Bytes(), "")
	f.Add(EncodeF32(x), "f32")
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F'}, "")
	f.Add([]byte("garbage"), "png")
	f.Fuzz(func(t *testing.T, b []byte, format string) {
		got, err := DecodeInput(Format(format), b, 784)
		if err != nil {
			return
		}
		if len(got) != 784 {
			t.Fatalf("%d values, want 784", len(got))
		}
		for i, v := range got {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("value %d is %v", i, v)
			}
		}
	})
}
