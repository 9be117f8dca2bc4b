package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDataAddShowFind publishes a dataset measured from an ImageFolder
// directory through the real binary, shows it by id, finds it by capability
// from a second node, and checks the errors for a missing path and a bad id.
func TestDataAddShowFind(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	upNode(t, a, "--roles", "data")
	upNode(t, b)
	connectCLI(t, a, b)

	// An ImageFolder: one subfolder per label, one file per sample.
	data := filepath.Join(t.TempDir(), "pets")
	for label, n := range map[string]int{"cat": 3, "dog": 5} {
		if err := os.MkdirAll(filepath.Join(data, label), 0o700); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			p := filepath.Join(data, label, label+string(rune('a'+i))+".png")
			if err := os.WriteFile(p, []byte(label+string(rune('a'+i))), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, errOut, code := run(t, "data", "add", "--data", a, data, "--task", "pet-classification", "--modality", "image")
	if code != 0 {
		t.Fatalf("data add: code %d, %s", code, errOut)
	}
	id := regexp.MustCompile(`id\s+(\S+)`).FindStringSubmatch(out)
	if id == nil || !strings.Contains(out, "8 samples") || !strings.Contains(out, "cat:3 dog:5") {
		t.Fatalf("data add printed no id or sample count:\n%s", out)
	}
	out, _, code = run(t, "descriptor", "show", "--data", a, id[1], "--json")
	if code != 0 || !strings.Contains(out, "pet-classification") {
		t.Fatalf("descriptor show: code %d\n%s", code, out)
	}
	findArgs := []string{"find", "data", "--data", b, "--task", "pet-classification", "--min-samples", "8"}
	deadline := 0
	for {
		out, errOut, code = run(t, findArgs...)
		if code == 0 && strings.Contains(out, "pets") {
			break
		}
		if deadline++; deadline > 40 {
			t.Fatalf("find from the other node: code %d\n%s\n%s", code, out, errOut)
		}
	}

	_, errOut, code = run(t, "data", "add", "--data", a, "/nonexistent/data", "--task", "x", "--modality", "image")
	if code == 0 || !strings.Contains(errOut, "/nonexistent/data") {
		t.Fatalf("missing path: code %d, stderr %q", code, errOut)
	}
	_, errOut, code = run(t, "descriptor", "show", "--data", a, "not-a-cid")
	if code == 0 || !strings.Contains(errOut, "not-a-cid") {
		t.Fatalf("bad id: code %d, stderr %q", code, errOut)
	}
}
