package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDemo runs the README's first command, smaller: a real federation on
// loopback trains on real MNIST, the MPVU signs the accuracy, and the served
// model answers queries over /daitn/infer. Without -short it runs at the
// README's full size.
func TestDemo(t *testing.T) {
	args := []string{"demo", "--nodes", "3", "--samples", "6000", "--target", "0.85", "--rounds", "15", "--infer", "100"}
	if !testing.Short() {
		args = []string{"demo"}
	}
	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "job ") || !strings.Contains(out, "signed by MPVU") {
		t.Fatalf("demo did not finish training:\n%s", out)
	}
	m := regexp.MustCompile(`over /daitn/infer: ([0-9.]+)% correct`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("demo did not query the served model:\n%s", out)
	}
	if acc, _ := strconv.ParseFloat(m[1], 64); acc < 80 {
		t.Fatalf("served model classified %.1f%% of the test digits correctly, want at least 80%%:\n%s", acc, out)
	}
	t.Log(out)
}

func TestDemoBadFlags(t *testing.T) {
	for _, tc := range []struct{ flag, val, want string }{
		{"--nodes", "0", "--nodes 0"},
		{"--samples", "5", "--samples 5"},
		{"--infer", "-1", "--infer -1"},
	} {
		_, errOut, code := run(t, "demo", tc.flag, tc.val)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("demo %s %s: exit %d, stderr %q, want an error naming %q", tc.flag, tc.val, code, errOut, tc.want)
		}
	}
}
