package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestAddGetPinGC drives the transfer commands through the real binary on
// two nodes: add on one, get on the other (plain progress lines, since
// stderr is not a terminal), then unpin and gc.
func TestAddGetPinGC(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	upA := upNode(t, a)
	upNode(t, b)
	connectCLI(t, b, a)

	src := filepath.Join(t.TempDir(), "model.bin")
	data := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, e, code := run(t, "add", "-q", "--data", a, src)
	if code != 0 {
		t.Fatalf("add: code %d, %s", code, e)
	}
	root := strings.TrimSpace(out)

	// What add acknowledged survives a SIGKILL of the node right after it.
	if err := upA.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = upA.Process.Wait()
	upNode(t, a)
	connectCLI(t, b, a)

	dst := filepath.Join(t.TempDir(), "got.bin")
	out, e, code = run(t, "get", "--data", b, root, "-o", dst)
	if code != 0 {
		t.Fatalf("get: code %d, stderr %s", code, e)
	}
	if !strings.Contains(out, "fetched "+root) || !strings.Contains(e, "progress 100.0%") || strings.Contains(e, "\r") {
		t.Fatalf("get output:\nstdout %s\nstderr %s", out, e)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Fatal("get wrote different bytes")
	}

	if _, e, code := run(t, "unpin", "--data", b, root); code != 0 {
		t.Fatalf("unpin: %s", e)
	}
	out, _, code = run(t, "gc", "--data", b)
	if code != 0 || !strings.Contains(out, "removed") || strings.Contains(out, "removed 0 ") {
		t.Fatalf("gc: code %d, %s", code, out)
	}
	if _, e, code := run(t, "unpin", "--data", b, root); code == 0 || !strings.Contains(e, "not pinned") {
		t.Fatalf("second unpin: code %d, %s", code, e)
	}
	if _, e, code := run(t, "get", "--data", b, "not-a-cid"); code == 0 || !strings.Contains(e, "cid") {
		t.Fatalf("get of a bad CID: code %d, %s", code, e)
	}
	out, _, code = run(t, "transfer", "stat", "--data", a)
	if code != 0 || !strings.Contains(out, "served") {
		t.Fatalf("transfer stat: %s", out)
	}
}
