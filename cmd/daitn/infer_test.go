package main

import (
	"context"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
)

// TestModelAddWeightsAndInfer runs the documented path with the real
// binary: a model trained on real MNIST is written to a file, one node
// publishes it with `model add --weights`, another asks `infer --skill`
// with a real MNIST test digit as PNG and gets the right class from that
// host; bad requests get errors that say what is wrong.
func TestModelAddWeightsAndInfer(t *testing.T) {
	dir, err := dataset.MNISTDir()
	if err != nil {
		t.Fatal(err)
	}
	train, err := dataset.ReadSetHead(dir, dataset.TrainPrefix, 3000)
	if err != nil {
		t.Fatal(err)
	}
	test, err := dataset.ReadSetHead(dir, dataset.TestPrefix, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := learn.New(learn.MNIST2NN, 1)
	if _, err := learn.Train(context.Background(), m, learn.Data{X: train.X, Y: train.Y}, learn.TrainConfig{Epochs: 2, Batch: 10, LR: 0.05, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := m.Predict(test.X[:784]); c != int(test.Y[0]) {
		t.Fatalf("fixture model gets the test digit wrong (%d, label %d)", c, test.Y[0])
	}
	tmp := t.TempDir()
	modelFile := filepath.Join(tmp, "model.bin")
	b, _ := learn.Marshal(m)
	digitFile := filepath.Join(tmp, "digit.png")
	f, _ := os.Create(digitFile)
	if err := infer.EncodePNG(f, test.X[:784]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	bigFile := filepath.Join(tmp, "big.png")
	f, _ = os.Create(bigFile)
	_ = png.Encode(f, image.NewGray(image.Rect(0, 0, 64, 64)))
	f.Close()
	garbage := filepath.Join(tmp, "garbage.bin")
	for p, data := range map[string][]byte{modelFile: b, garbage: []byte("not a model")} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Beacons every second, so the client's map sees the host quickly.
	a, c := t.TempDir(), t.TempDir()
	for _, d := range []string{a, c} {
		if _, _, code := run(t, "init", "--data", d); code != 0 {
			t.Fatal("init failed")
		}
		cfg, _ := os.ReadFile(filepath.Join(d, "config.toml"))
		cfg = append(cfg, "\n[services.overlay]\ninterval = \"1s\"\n"...)
		if err := os.WriteFile(filepath.Join(d, "config.toml"), cfg, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	upNode(t, a)
	upNode(t, c)
	idA := connectCLI(t, c, a)

	if _, e, code := run(t, "model", "add", "--data", a, "--name", "digits", "--version", "1", "--weights", garbage, "--skill", "classify-digits"); code == 0 || !strings.Contains(e, "not a daitn model file") {
		t.Fatalf("model add with a garbage weights file: code %d, %s", code, e)
	}
	if _, e, code := run(t, "model", "add", "--data", a, "--name", "digits", "--version", "1", "--weights", modelFile,
		"--skill", "classify-digits", "--accuracy", "0.9", "--latency-ms", "1"); code != 0 {
		t.Fatalf("model add --weights: code %d, %s", code, e)
	}

	var res node.InferResponse
	deadline := time.Now().Add(40 * time.Second)
	for {
		out, e, code := run(t, "infer", "--data", c, "--skill", "classify-digits", "--min-accuracy", "0.8", digitFile, "--json")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("infer --json: %v\n%s", err, out)
			}
			break
		}
		if !strings.Contains(e, "no model") || time.Now().After(deadline) {
			t.Fatalf("infer: code %d, %s", code, e)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.Class != int(test.Y[0]) || res.Host.String() != idA.PeerID || res.Name != "digits" {
		t.Fatalf("answer %+v, want class %d from %s", res, test.Y[0], idA.PeerID)
	}
	out, e, code := run(t, "infer", "--data", c, "--skill", "classify-digits", digitFile)
	for _, want := range []string{"class       " + string(rune('0'+test.Y[0])), "confidence", "digits (" + res.Model + ")", "host        " + idA.PeerID, "latency"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("infer: code %d, stderr %s, stdout lacks %q:\n%s", code, e, want, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--skill", "translate-klingon", digitFile}, `no model in the map serves skill "translate-klingon"`},
		{[]string{"--skill", "classify-digits", "--min-accuracy", "0.99", digitFile}, "below 0.99"},
		{[]string{"--skill", "classify-digits", bigFile}, "64x64 pixels, want 28x28"},
		{[]string{digitFile}, "give --skill"},
		{[]string{"--model", res.Model, bigFile}, "want 28x28"},
	} {
		_, e, code := run(t, append([]string{"infer", "--data", c}, tc.args...)...)
		if code == 0 || !strings.Contains(e, tc.want) {
			t.Errorf("infer %v: code %d, stderr %q, want it to say %q", tc.args, code, e, tc.want)
		}
	}

	// Through the task pool the host's agent bids: the task id comes
	// first on stderr, then the answer. The pool topic's mesh may still
	// be forming, so the first query may wait for the posting's republish.
	out, e, code = run(t, "infer", "--data", c, "--skill", "classify-digits", "--pool", "infer", "--policy", "first", digitFile, "--json")
	var viaPool node.InferResponse
	if code != 0 || json.Unmarshal([]byte(out), &viaPool) != nil {
		t.Fatalf("infer --pool: code %d, stderr %s, stdout %s", code, e, out)
	}
	if viaPool.Class != int(test.Y[0]) || viaPool.Host.String() != idA.PeerID || viaPool.Task == "" ||
		!strings.Contains(e, "task "+viaPool.Task+" posted to pool infer") || !strings.Contains(e, "daitn infer --task "+viaPool.Task) {
		t.Fatalf("infer --pool: %+v, stderr %q; want class %d from %s and the task id on stderr", viaPool, e, test.Y[0], idA.PeerID)
	}
	// A query posted earlier (here with the generic task command) is read
	// by its id; once read it is gone.
	id, e, code := run(t, "task", "post", "--data", c, "--pool", "infer", "--kind", "infer", "--skill", "classify-digits", "--input", digitFile)
	id = strings.TrimSpace(id)
	if code != 0 || id == "" {
		t.Fatalf("task post: code %d, %s", code, e)
	}
	out, e, code = run(t, "infer", "--data", c, "--task", id)
	if code != 0 || !strings.Contains(out, "class       "+string(rune('0'+test.Y[0]))) || !strings.Contains(out, "task        "+id) {
		t.Fatalf("infer --task: code %d, stderr %s, stdout:\n%s", code, e, out)
	}
	if _, e, code := run(t, "infer", "--data", c, "--task", id); code == 0 || !strings.Contains(e, "not found") {
		t.Fatalf("infer --task a second time: code %d, %s; want not found", code, e)
	}
	if _, e, code := run(t, "infer", "--data", c, "--task", id, digitFile); code == 0 || !strings.Contains(e, "give it alone") {
		t.Fatalf("infer --task with a file: code %d, %s", code, e)
	}
}
