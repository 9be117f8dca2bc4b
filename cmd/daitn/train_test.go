package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainCLIBadInputAndShard drives the training commands through the real
// binary on a real node: an MNIST shard is published with `data add
// --mnist-shard`, a malformed job file is refused with the key named, and a
// job the network cannot meet is refused at admission with the reason.
func TestTrainCLIBadInputAndShard(t *testing.T) {
	dir := t.TempDir()
	upNode(t, dir, "--roles", "data,client")

	out, errOut, code := run(t, "data", "add", "--data", dir, "--mnist-shard", "2/10")
	if code != 0 || !strings.Contains(out, "6000 samples") {
		t.Fatalf("data add --mnist-shard: code %d out %q err %q", code, out, errOut)
	}
	_, errOut, code = run(t, "data", "add", "--data", dir, "--mnist-shard", "11/10")
	if code == 0 || !strings.Contains(errOut, "11/10") {
		t.Fatalf("shard 11/10: code %d err %q, want an error naming the shard", code, errOut)
	}

	jobs := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(jobs, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "[model]\narch = \"mnist-2nn\"\ncolour = 1\n[target]\naccuracy = 0.9\n[data]\ntask = \"digits-classification\"\n", "colour"},
		{"bad accuracy", "[model]\narch = \"mnist-2nn\"\n[target]\naccuracy = 1.5\n[data]\ntask = \"digits-classification\"\n", "target.accuracy"},
		{"unknown arch", "[model]\narch = \"resnet9000\"\n[target]\naccuracy = 0.9\n[data]\ntask = \"digits-classification\"\n", "resnet9000"},
		// One shard of 6,000 samples cannot give 10 datasets; there is no MPVU either.
		{"impossible", "[model]\narch = \"mnist-2nn\"\n[target]\naccuracy = 0.9\n[data]\ntask = \"digits-classification\"\nmin_datasets = 10\n", "not admitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := run(t, "train", "submit", "--data", dir, write(strings.ReplaceAll(tc.name, " ", "-")+".toml", tc.body))
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("code %d stderr %q, want non-zero and %q", code, errOut, tc.want)
			}
		})
	}
	out, _, code = run(t, "train", "ls", "--data", dir)
	if code != 0 {
		t.Fatalf("train ls: code %d", code)
	}
	if strings.Contains(out, "mnist-2nn") {
		t.Fatalf("a refused job was listed:\n%s", out)
	}
}
