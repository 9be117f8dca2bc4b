package descriptors

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/daitn/daitn/descriptors/sketch"
)

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sample returns a valid unsigned descriptor of kind k.
func sample(k Kind, name string) *Descriptor {
	d := &Descriptor{Header: Header{Kind: k, Name: name}}
	switch k {
	case KindData:
		d.Data = &Data{Task: "digits-classification", Modality: "image", Format: "mnist-idx", Samples: 6000, SizeBytes: 4704000,
			LabelDist: map[string]int64{"0": 600, "1": 600}, Updated: time.Now().Add(-time.Hour), Policy: Policy{Mode: PolicyTrainInPlace},
			Sketch: &Sketch{Algo: sketch.Algo, K: 4, Mins: make([]byte, 8)}}
	case KindModel:
		d.Model = &Model{Version: "1.0", Architecture: "mlp-784-128-10", Params: 101770, Skills: []string{"classify-digits"}, Task: "digits-classification", ClaimedAccuracy: 0.97}
	case KindCompute:
		d.Compute = &Compute{CPUCores: 8, MemoryBytes: 16 << 30, FreeCPU: 0.5, FreeMemory: 0.5, Roles: []string{"compute", "host"}}
	case KindTestset:
		d.Testset = &Testset{Task: "digits-classification", Samples: 10000, Metrics: []string{"accuracy"}}
	}
	return d
}

func TestSignOpenRoundTrip(t *testing.T) {
	priv := newKey(t)
	for _, k := range Kinds {
		t.Run(string(k), func(t *testing.T) {
			s, err := Sign(priv, sample(k, "x"))
			if err != nil {
				t.Fatal(err)
			}
			o, err := Open(s.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if o.ID != s.ID || o.Slot != s.Slot || o.Kind != k || o.Seq != 1 {
				t.Fatalf("round trip changed: %+v vs %+v", o.Header, s.Header)
			}
			if got, want := o.ID, VersionID(s.Raw); got != want {
				t.Fatalf("id %s, want CID of envelope %s", got, want)
			}
			a, _ := Marshal(&o.Descriptor)
			b, _ := Marshal(&s.Descriptor)
			if string(a) != string(b) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func TestSignRejects(t *testing.T) {
	priv := newKey(t)
	other := newKey(t)
	otherID := mustID(t, other)
	cases := []struct {
		name    string
		mod     func(d *Descriptor)
		wantErr error
		field   string
	}{
		{"unknown kind", func(d *Descriptor) { d.Kind = "weights" }, ErrUnknownKind, "kind"},
		{"no name", func(d *Descriptor) { d.Name = "" }, ErrMissingField, "name"},
		{"no task", func(d *Descriptor) { d.Data.Task = "" }, ErrMissingField, "data.task"},
		{"no modality", func(d *Descriptor) { d.Data.Modality = " " }, ErrMissingField, "data.modality"},
		{"negative samples", func(d *Descriptor) { d.Data.Samples = -1 }, ErrInvalidField, "data.samples"},
		{"bad policy", func(d *Descriptor) { d.Data.Policy.Mode = "free-for-all" }, ErrInvalidField, "data.policy.mode"},
		{"two bodies", func(d *Descriptor) { d.Model = &Model{} }, ErrKindMismatch, "model"},
		{"owner mismatch", func(d *Descriptor) { d.Owner = otherID }, ErrOwnerMismatch, otherID},
		{"expires before issued", func(d *Descriptor) { d.Issued = time.Now(); d.Expires = d.Issued.Add(-time.Hour) }, ErrInvalidField, "expires"},
		{"ttl too long", func(d *Descriptor) { d.Expires = time.Now().Add(365 * 24 * time.Hour) }, ErrInvalidField, "expires"},
		{"bad sketch", func(d *Descriptor) { d.Data.Sketch.K = 5 }, ErrInvalidField, "data.sketch"},
		{"bad seal", func(d *Descriptor) { d.Sealed = map[string][]byte{"data.owner": make([]byte, 32)} }, ErrInvalidField, "sealed.data.owner"},
		{"control chars", func(d *Descriptor) { d.Name = "a\x00b" }, ErrInvalidField, "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := sample(KindData, "x")
			c.mod(d)
			_, err := Sign(priv, d)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %q", err, c.field)
			}
		})
	}
	for _, k := range []Kind{KindModel, KindCompute, KindTestset} {
		d := sample(k, "x")
		switch k {
		case KindModel:
			d.Model.Skills = nil
		case KindCompute:
			d.Compute.CPUCores = 0
		case KindTestset:
			d.Testset.Task = ""
		}
		if _, err := Sign(priv, d); err == nil {
			t.Fatalf("%s with a missing required field was signed", k)
		}
	}
}

func mustID(t testing.TB, k crypto.PrivKey) string {
	t.Helper()
	s, err := Sign(k, sample(KindCompute, "id"))
	if err != nil {
		t.Fatal(err)
	}
	return s.Owner
}

func TestSignedJSON(t *testing.T) {
	s, err := Sign(newKey(t), sample(KindModel, "j"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"id":"`+s.ID.String()+`"`) || !strings.Contains(string(b), `"slot":"`+s.Slot.String()+`"`) || !strings.Contains(string(b), `"skills":["classify-digits"]`) {
		t.Fatalf("json %s", b)
	}
	var back Signed
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != s.ID || back.Slot != s.Slot || back.Model.Version != "1.0" || !back.Issued.Equal(s.Issued) {
		t.Fatalf("round trip %+v", back)
	}
}

func TestMatchesTable(t *testing.T) {
	now := time.Now()
	data := sample(KindData, "d")
	data.Data.Updated = now.Add(-2 * time.Hour)
	model := sample(KindModel, "m")
	ts := sample(KindTestset, "t")
	comp := sample(KindCompute, "c")
	cases := []struct {
		q    Query
		d    *Descriptor
		want bool
	}{
		{Query{Kind: KindData, Task: "DIGITS-classification"}, data, true},
		{Query{Kind: KindData, Task: "speech"}, data, false},
		{Query{Kind: KindModel}, data, false},
		{Query{MinSamples: 6000}, data, true},
		{Query{MinSamples: 6001}, data, false},
		{Query{MaxAge: time.Hour}, data, false},
		{Query{MaxAge: 3 * time.Hour}, data, true},
		{Query{Modality: "image"}, data, true},
		{Query{Modality: "text"}, data, false},
		{Query{Skill: "classify-digits"}, model, true},
		{Query{Skill: "classify-digits"}, data, false},
		{Query{Role: "mpvu"}, ts, true},
		{Query{Role: "host"}, comp, true},
		{Query{Role: "mpvu"}, comp, false},
		{Query{Name: "c"}, comp, true},
		{Query{}, &Descriptor{Header: Header{Kind: KindData}}, false}, // no body
		{Query{}, nil, false},
	}
	for i, c := range cases {
		if got := c.q.Matches(c.d, now); got != c.want {
			t.Errorf("case %d %+v: got %v want %v", i, c.q, got, c.want)
		}
	}
}
