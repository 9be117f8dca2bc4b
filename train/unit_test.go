package train

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/descriptors/sketch"
)

const goodJob = `
name = "mnist"
[model]
arch = "mnist-2nn"
[target]
accuracy = 0.97
deadline = "30m"
max_rounds = 50
[data]
task = "digits-classification"
min_samples = 500
max_age = "720h"
min_datasets = 3
[settings]
clients = 10
epochs = 1
batch = 10
lr = 0.05
`

func TestParseJob(t *testing.T) {
	s, err := ParseJobTOML([]byte(goodJob))
	if err != nil {
		t.Fatal(err)
	}
	if s.Target.Deadline.Duration != 30*time.Minute || s.Data.MinDatasets != 3 || s.Settings.LR != 0.05 {
		t.Fatalf("parsed %+v", s)
	}
	js, _ := json.Marshal(s)
	s2, err := ParseJobJSON(js)
	if err != nil || !reflect.DeepEqual(s, s2) {
		t.Fatalf("JSON round trip: %v\n%+v\n%+v", err, s, s2)
	}
	sub := func(old, new string) string { return strings.Replace(goodJob, old, new, 1) }
	for _, tc := range []struct{ name, in, key string }{
		{"unknown key", sub("lr = 0.05", "lr = 0.05\nlearning_rate = 1"), "settings.learning_rate"},
		{"unknown table", goodJob + "\n[extra]\nx = 1\n", "extra"},
		{"accuracy above 1", sub("accuracy = 0.97", "accuracy = 1.5"), "target.accuracy"},
		{"accuracy zero", sub("accuracy = 0.97", "accuracy = 0.0"), "target.accuracy"},
		{"accuracy as string", sub("accuracy = 0.97", `accuracy = "high"`), "target.accuracy"},
		{"bad deadline", sub(`deadline = "30m"`, `deadline = "soon"`), "target.deadline"},
		{"unknown arch", sub(`arch = "mnist-2nn"`, `arch = "resnet"`), "model.arch"},
		{"missing arch", sub(`arch = "mnist-2nn"`, ``), "model.arch"},
		{"bad initial", sub(`arch = "mnist-2nn"`, "arch = \"mnist-2nn\"\ninitial = \"nope\""), "model.initial"},
		{"missing task", sub(`task = "digits-classification"`, ``), "data.task"},
		{"negative lr", sub("lr = 0.05", "lr = -1.0"), "settings.lr"},
		{"huge epochs", sub("epochs = 1", "epochs = 100000"), "settings.epochs"},
		{"negative clients", sub("clients = 10", "clients = -2"), "settings.clients"},
		{"max rounds", sub("max_rounds = 50", "max_rounds = -1"), "target.max_rounds"},
		{"mpvu not a peer", goodJob + "\n[evaluation]\nmpvu = \"bob\"\n", "evaluation.mpvu"},
		{"not toml", "model = [", "line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJobTOML([]byte(tc.in))
			if err == nil || !errors.Is(err, ErrJobSpec) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %v, want ErrJobSpec naming %q", err, tc.key)
			}
		})
	}
	if _, err := ParseJobJSON([]byte(`{"model":{"arch":"mnist-2nn"},"target":{"accuracy":0.9},"data":{"task":"x"},"bogus":1}`)); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("JSON unknown key: %v", err)
	}
	if _, err := ParseJobJSON([]byte(`{"model":{"arch":"mnist-2nn"},"target":{"accuracy":"x"},"data":{"task":"x"}}`)); err == nil || !strings.Contains(err.Error(), "target.accuracy") {
		t.Fatalf("JSON wrong type: %v", err)
	}
}

func TestParseSet(t *testing.T) {
	r, err := ParseSet([]string{"lr=0.01", "clients=3", "epochs=2", "batch=50"})
	if err != nil || *r.LR != 0.01 || *r.Clients != 3 || *r.Epochs != 2 || *r.Batch != 50 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"lr", "lr=x", "lr=-1", "clients=0", "rate=1", "epochs=1000000"} {
		if _, err := ParseSet([]string{bad}); err == nil {
			t.Errorf("ParseSet(%q) accepted", bad)
		}
	}
}

func pid(t *testing.T) (peer.ID, crypto.PrivKey) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return id, k
}

func TestAdmit(t *testing.T) {
	a, _ := pid(t)
	b, _ := pid(t)
	m, _ := pid(t)
	spec, _ := ParseJobTOML([]byte(goodJob)) // needs 3 datasets
	data := []Candidate{{Peer: a, Dataset: "x", Reachable: true}, {Peer: b, Dataset: "y", Reachable: true}, {Peer: b, Dataset: "z"}}
	evals := []Evaluator{{Peer: m, Tasks: []string{"digits-classification"}, Samples: 10000, Reachable: true}}
	for _, tc := range []struct {
		name   string
		data   []Candidate
		evals  []Evaluator
		ok     bool
		reason string
	}{
		{"too few reachable", data, evals, false, "only 2 of 3 data shards reachable"},
		{"enough", append(data, Candidate{Peer: a, Dataset: "w", Reachable: true}), evals, true, ""},
		{"no mpvu", append(data, Candidate{Peer: a, Dataset: "w", Reachable: true}), nil, false, "no MPVU with a test set for task digits-classification"},
		{"mpvu other task", append(data, Candidate{Peer: a, Dataset: "w", Reachable: true}),
			[]Evaluator{{Peer: m, Tasks: []string{"speech"}, Reachable: true}}, false, "no MPVU with a test set"},
		{"mpvu unreachable", append(data, Candidate{Peer: a, Dataset: "w", Reachable: true}),
			[]Evaluator{{Peer: m, Tasks: []string{"digits-classification"}}}, false, "no MPVU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ad := Admit(spec, tc.data, tc.evals)
			if ad.OK != tc.ok || (tc.reason != "" && !strings.Contains(strings.Join(ad.Reasons, ";"), tc.reason)) {
				t.Fatalf("admission %+v, want ok=%v reason %q", ad, tc.ok, tc.reason)
			}
			if ad.OK && ad.MPVU != m {
				t.Fatalf("chose MPVU %s, want %s", ad.MPVU, m)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	var cands []Candidate
	var ids []peer.ID
	for i := 0; i < 10; i++ {
		p, _ := pid(t)
		ids = append(ids, p)
		cands = append(cands, Candidate{Peer: p, Dataset: "d", Samples: 600, Reachable: i != 9})
	}
	got := Choose(cands, 4, 1, 1, map[string]string{ids[0].String(): "bad"})
	if len(got) != 4 {
		t.Fatalf("chose %d, want 4", len(got))
	}
	for _, c := range got {
		if c.Peer == ids[0] || c.Peer == ids[9] {
			t.Fatalf("chose excluded or unreachable %s", c.Peer)
		}
	}
	if again := Choose(cands, 4, 1, 1, map[string]string{ids[0].String(): "bad"}); !reflect.DeepEqual(got, again) {
		t.Fatal("same seed and round chose differently")
	}
	if all := Choose(cands, 0, 1, 1, nil); len(all) != 9 {
		t.Fatalf("k=0 chose %d, want the 9 reachable", len(all))
	}
	// Redundant content: two datasets with the same sketch count once.
	mh, _ := sketch.New(64)
	for i := 0; i < 100; i++ {
		mh.Add([]byte{byte(i)})
	}
	sk := descriptors.SketchOf(mh)
	dup := []Candidate{
		{Peer: ids[1], Dataset: "a", Sketch: sk, Reachable: true, Age: time.Minute},
		{Peer: ids[2], Dataset: "b", Sketch: sk, Reachable: true, Age: time.Hour},
	}
	got = Choose(dup, 0, 1, 1, nil)
	if len(got) != 1 || got[0].Peer != ids[1] {
		t.Fatalf("redundant datasets: chose %v, want only the fresher one", got)
	}
}

func testReport(t *testing.T, key crypto.PrivKey, id peer.ID) *EvalReport {
	return &EvalReport{Model: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Arch: "mnist-2nn", Testset: "t",
		Accuracy: 0.9, Loss: 0.3, Samples: 10000, Time: time.Now().UnixMilli(), Evaluator: id.String(), Nonce: []byte("0123456789abcdef")}
}

func TestEvalReportSignatures(t *testing.T) {
	mid, mkey := pid(t)
	oid, okey := pid(t)
	r := testReport(t, mkey, mid)
	b, err := SealEvalReport(r, mkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReport(b, mid, r.Model, r.Nonce); err != nil {
		t.Fatalf("good report: %v", err)
	}
	// A report signed by someone else is not the chosen MPVU's.
	other := testReport(t, okey, oid)
	ob, _ := SealEvalReport(other, okey)
	if _, err := VerifyReport(ob, mid, r.Model, r.Nonce); !errors.Is(err, ErrNotChosenMPVU) {
		t.Fatalf("other signer: %v, want ErrNotChosenMPVU", err)
	}
	// Naming the MPVU while signing with another key is caught.
	forged := testReport(t, okey, mid)
	if _, err := SealEvalReport(forged, okey); err == nil {
		t.Fatal("sealing a report naming another evaluator succeeded")
	}
	if _, err := VerifyReport(b, mid, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zz", r.Nonce); err == nil {
		t.Fatal("report for another model accepted")
	}
	if _, err := VerifyReport(b, mid, r.Model, []byte("another-nonce-xx")); err == nil {
		t.Fatal("replayed report (wrong nonce) accepted")
	}
	flipped := bytes.Clone(b)
	flipped[len(flipped)-10] ^= 1
	if _, err := OpenEvalReport(flipped); err == nil {
		t.Fatal("tampered envelope accepted")
	}
}

func TestRoundWire(t *testing.T) {
	rt := &RoundTask{Job: "j", Round: 1, Arch: "mnist-2nn", Model: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Dataset: "d", Epochs: 1, Batch: 10, LR: 0.1}
	b, err := MarshalRoundTask(rt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalRoundTask(b)
	if err != nil || !reflect.DeepEqual(got, rt) {
		t.Fatalf("%v %+v", err, got)
	}
	for _, bad := range []func(*RoundTask){
		func(r *RoundTask) { r.LR = 0 }, func(r *RoundTask) { r.Epochs = 0 }, func(r *RoundTask) { r.Arch = "x" },
		func(r *RoundTask) { r.Model = "x" }, func(r *RoundTask) { r.Dataset = "" }, func(r *RoundTask) { r.Round = 0 },
	} {
		c := *rt
		bad(&c)
		if _, err := MarshalRoundTask(&c); !errors.Is(err, ErrBadMessage) {
			t.Errorf("bad task %+v accepted: %v", c, err)
		}
	}
	if _, err := UnmarshalRoundTask(make([]byte, MaxRoundTaskBytes+1)); err == nil {
		t.Fatal("oversized task accepted")
	}
}
