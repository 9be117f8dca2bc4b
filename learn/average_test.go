package learn

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/quick"
)

func TestAverageIdentity(t *testing.T) {
	m, _ := New(MNIST2NN, 1)
	ups := []Update{{Params: m.Params, Weight: 600}, {Params: m.Params, Weight: 17}, {Params: m.Params, Weight: 1}}
	got, err := Average(m.NumParams(), ups)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, m.Params) {
		t.Fatal("FedAvg of identical updates is not the identity")
	}
	// And for arbitrary weights and values, within float32 rounding.
	f := func(vals []float32, w1, w2 float64) bool {
		for i, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				vals[i] = 0
			}
		}
		w1, w2 = math.Abs(w1)+1e-300, math.Abs(w2)+1e-300
		if len(vals) == 0 {
			return true
		}
		out, err := Average(len(vals), []Update{{Params: vals, Weight: w1}, {Params: vals, Weight: w2}})
		if err != nil {
			return false
		}
		for i := range out {
			if math.Abs(float64(out[i]-vals[i])) > 1e-6*math.Abs(float64(vals[i])) {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAverageWeights(t *testing.T) {
	for _, tc := range []struct {
		name string
		ups  []Update
		want []float32
	}{
		{"equal", []Update{{Params: []float32{0, 10}, Weight: 1}, {Params: []float32{2, 20}, Weight: 1}}, []float32{1, 15}},
		{"3 to 1", []Update{{Params: []float32{0, 4}, Weight: 300}, {Params: []float32{4, 0}, Weight: 100}}, []float32{1, 3}},
		{"scale free", []Update{{Params: []float32{0, 4}, Weight: 0.3}, {Params: []float32{4, 0}, Weight: 0.1}}, []float32{1, 3}},
		{"single", []Update{{Params: []float32{-1, 7}, Weight: 5}}, []float32{-1, 7}},
		{"three", []Update{{Params: []float32{1}, Weight: 1}, {Params: []float32{2}, Weight: 2}, {Params: []float32{6}, Weight: 3}}, []float32{(1 + 4 + 18) / 6.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Average(len(tc.want), tc.ups)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if math.Abs(float64(got[i]-tc.want[i])) > 1e-6 {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
	// The average of two trained models, weighted by sample counts, equals
	// the sample-weighted mean computed by hand.
	r := rand.New(rand.NewPCG(1, 1))
	a, b := make([]float32, 100), make([]float32, 100)
	for i := range a {
		a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	got, _ := Average(100, []Update{{Params: a, Weight: 600}, {Params: b, Weight: 200}})
	for i := range got {
		want := (600*float64(a[i]) + 200*float64(b[i])) / 800
		if math.Abs(float64(got[i])-want) > 1e-6 {
			t.Fatalf("param %d: %v, want %v", i, got[i], want)
		}
	}
}

func TestAverageRejects(t *testing.T) {
	good := Update{From: "peerA", Params: []float32{1, 2, 3}, Weight: 10}
	for _, tc := range []struct {
		name     string
		bad      Update
		sentinel error
		want     string
	}{
		{"short", Update{From: "peerB", Params: []float32{1, 2}, Weight: 10}, ErrShape, "update 1 from peerB: wrong number of parameters: 2, the model has 3"},
		{"long", Update{From: "peerB", Params: []float32{1, 2, 3, 4}, Weight: 10}, ErrShape, "4, the model has 3"},
		{"nan", Update{From: "peerB", Params: []float32{1, float32(math.NaN()), 3}, Weight: 10}, ErrNonFinite, "parameter 1 is NaN"},
		{"inf", Update{From: "peerB", Params: []float32{1, 2, float32(math.Inf(-1))}, Weight: 10}, ErrNonFinite, "parameter 2 is -Inf"},
		{"zero weight", Update{From: "peerB", Params: []float32{1, 2, 3}}, ErrWeight, "invalid weight: 0"},
		{"negative weight", Update{From: "peerB", Params: []float32{1, 2, 3}, Weight: -5}, ErrWeight, "-5"},
		{"nan weight", Update{From: "peerB", Params: []float32{1, 2, 3}, Weight: math.NaN()}, ErrWeight, "NaN"},
		{"inf weight", Update{From: "peerB", Params: []float32{1, 2, 3}, Weight: math.Inf(1)}, ErrWeight, "+Inf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Average(3, []Update{good, tc.bad, good})
			if out != nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want %v containing %q", out, err, tc.sentinel, tc.want)
			}
			var ue *UpdateError
			if !errors.As(err, &ue) || ue.Index != 1 || ue.From != "peerB" {
				t.Fatalf("error %v does not name update 1 from peerB", err)
			}
			if CheckUpdate(3, tc.bad) == nil || CheckUpdate(3, good) != nil {
				t.Fatal("CheckUpdate disagrees with Average")
			}
		})
	}
	if _, err := Average(3, nil); !errors.Is(err, ErrNoUpdates) {
		t.Fatalf("no updates: %v", err)
	}
	if out, err := Average(1, []Update{{Params: []float32{1}, Weight: math.MaxFloat64}, {Params: []float32{3}, Weight: math.MaxFloat64}}); err != nil || out[0] != 2 {
		t.Fatalf("huge weights: %v, %v", out, err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, name := range []string{MNIST2NN, LogReg} {
		m, _ := New(name, 3)
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != ParamsOffset(m.Arch)+4*m.NumParams() {
			t.Fatalf("%s: %d bytes", name, len(b))
		}
		b2, _ := Marshal(m.Clone())
		if !bytes.Equal(b, b2) {
			t.Fatal("Marshal is not deterministic")
		}
		back, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if back.Arch.Name != name || !equal(back.Params, m.Params) {
			t.Fatalf("%s did not round-trip", name)
		}
	}
}

// A small change to the weights changes only the bytes of those weights:
// what lets content-defined chunking move only what changed.
func TestMarshalLocality(t *testing.T) {
	m, _ := New(MNIST2NN, 1)
	before, _ := Marshal(m)
	for _, i := range []int{0, 1234, 157000, m.NumParams() - 1} {
		m.Params[i] += 0.125
	}
	after, _ := Marshal(m)
	if len(before) != len(after) {
		t.Fatal("length changed")
	}
	var diff []int
	for i := range before {
		if before[i] != after[i] {
			diff = append(diff, i)
		}
	}
	off := ParamsOffset(m.Arch)
	for _, d := range diff {
		p := (d - off) / 4
		if d < off || (p != 0 && p != 1234 && p != 157000 && p != m.NumParams()-1) {
			t.Fatalf("byte %d (param %d) changed", d, p)
		}
	}
	if len(diff) == 0 || len(diff) > 16 {
		t.Fatalf("%d bytes changed", len(diff))
	}
}

func TestUnmarshalErrors(t *testing.T) {
	if err := RegisterArch(tiny); err != nil {
		t.Fatal(err)
	}
	m, _ := New(tiny.Name, 1)
	good, _ := Marshal(m)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	off := ParamsOffset(m.Arch)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than the 12-byte header"},
		{"magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), "magic"},
		{"version", mut(func(b []byte) []byte { b[8] = 2; return b }), "version 2"},
		{"name len", mut(func(b []byte) []byte { b[10] = 0; return b }), "name length 0"},
		{"layers", mut(func(b []byte) []byte { b[11] = 1; return b }), "1 layer sizes"},
		{"unknown", mut(func(b []byte) []byte { b[12] = 'X'; return b }), `unknown architecture "Xest-tiny"`},
		{"shape", mut(func(b []byte) []byte { b[12+len(tiny.Name)] = 7; return b }), "shape test-tiny(7-5-4-3) does not match the registered test-tiny(6-5-4-3)"},
		{"count", mut(func(b []byte) []byte { b[off-4]++; return b }), "75 parameters announced"},
		{"truncated", good[:len(good)-1], "needs exactly 296"},
		{"trailing", append(append([]byte(nil), good...), 0), "needs exactly 296"},
		{"short header", good[:20], "truncated header"},
		{"nan", mut(func(b []byte) []byte { copy(b[off+8:], []byte{0, 0, 0xc0, 0x7f}); return b }), "parameter 2 is NaN"},
		{"huge", make([]byte, MaxModelBytes+1), "limit is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.in)
			if !errors.Is(err, ErrEncoding) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrEncoding containing %q", err, tc.want)
			}
		})
	}
	m.Params[3] = float32(math.Inf(1))
	if _, err := Marshal(m); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("Marshal of Inf: %v", err)
	}
}

// FuzzUnmarshal: whatever Unmarshal accepts is a well-formed, finite model of
// a registered architecture that re-marshals to exactly the same bytes.
func FuzzUnmarshal(f *testing.F) {
	if err := RegisterArch(tiny); err != nil {
		f.Fatal(err)
	}
	m, _ := New(tiny.Name, 1)
	good, _ := Marshal(m)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte(modelMagic + "\x01\x00\x06\x02logreg"))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := Unmarshal(in)
		if err != nil {
			if !errors.Is(err, ErrEncoding) {
				t.Fatalf("error %v does not wrap ErrEncoding", err)
			}
			return
		}
		if err := m.check(); err != nil {
			t.Fatalf("accepted a malformed model: %v", err)
		}
		if _, err := LookupArch(m.Arch.Name); err != nil {
			t.Fatal(err)
		}
		out, err := Marshal(m)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("accepted bytes are not canonical: %v", err)
		}
	})
}

func TestUnmarshalAs(t *testing.T) {
	m, _ := New(LogReg, 1)
	b, _ := Marshal(m)
	if len(b) != EncodedSize(m.Arch) {
		t.Fatalf("EncodedSize %d, Marshal wrote %d", EncodedSize(m.Arch), len(b))
	}
	if _, err := UnmarshalAs(b, LogReg); err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalAs(b, MNIST2NN); !errors.Is(err, ErrEncoding) || !strings.Contains(err.Error(), "architecture logreg, want mnist-2nn") {
		t.Fatalf("logreg bytes as 2NN: %v", err)
	}
	if _, err := UnmarshalAs(append(b, 0), LogReg); !errors.Is(err, ErrEncoding) || !strings.Contains(err.Error(), "a logreg(784-10) model is 31430") {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := UnmarshalAs(b, "nope"); !errors.Is(err, ErrUnknownArch) {
		t.Fatalf("unknown arch: %v", err)
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b []float32
		want float64
	}{
		{[]float32{0, 0}, []float32{3, 4}, 5},
		{[]float32{1, 2, 3}, []float32{1, 2, 3}, 0},
		{[]float32{1}, []float32{1, 2}, math.Inf(1)},
		{nil, nil, 0},
		{[]float32{math.MaxFloat32}, []float32{-math.MaxFloat32}, 2 * math.MaxFloat32},
	} {
		if got := Distance(tc.a, tc.b); math.Abs(got-tc.want) > 1e-9*math.Max(1, tc.want) && got != tc.want {
			t.Errorf("Distance(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
