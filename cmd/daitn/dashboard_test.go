package main

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/daitn/daitn/oam"
)

// daitn dashboard --print prints the address of the running node's
// dashboard with the token from api.token in the fragment, and that
// address serves the page.
func TestDashboardPrint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	upNode(t, dir)
	out, errOut, code := run(t, "dashboard", "--print", "--data", dir)
	if code != 0 {
		t.Fatalf("dashboard --print: code %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("dashboard --print printed %q, want one line with the address", out)
	}
	u, err := url.Parse(lines[0])
	if err != nil {
		t.Fatalf("dashboard --print printed %q: %v", lines[0], err)
	}
	addr, _ := os.ReadFile(filepath.Join(dir, oam.AddrFile))
	tok, _ := os.ReadFile(filepath.Join(dir, oam.TokenFile))
	if u.Scheme != "http" || u.Host != strings.TrimSpace(string(addr)) || u.Path != "/ui/" {
		t.Fatalf("address %s: want http://%s/ui/", u, strings.TrimSpace(string(addr)))
	}
	if u.RawQuery != "" || u.Fragment != "token="+strings.TrimSpace(string(tok)) {
		t.Fatalf("address %s: want the token of api.token in the fragment and nowhere else", u)
	}
	// What the browser requests: the address without its fragment.
	u.Fragment = ""
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "<title>daitn dashboard</title>") {
		t.Fatalf("GET %s: %d, want the dashboard page", u, resp.StatusCode)
	}
}

func TestDashboardWithoutNode(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := run(t, "dashboard", "--print", "--data", dir)
	if code == 0 || out != "" || !strings.Contains(errOut, "no node is running") {
		t.Fatalf("dashboard without a node: code %d, out %q, stderr %q; want an error and no address", code, out, errOut)
	}
	// A killed node's files are left behind: the address is not printed.
	if err := os.WriteFile(filepath.Join(dir, oam.AddrFile), []byte(deadAddr(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, oam.TokenFile), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run(t, "dashboard", "--print", "--data", dir)
	if code == 0 || out != "" || !strings.Contains(errOut, "does not answer") {
		t.Fatalf("dashboard with a stale api.addr: code %d, out %q, stderr %q; want an error and no address", code, out, errOut)
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}
