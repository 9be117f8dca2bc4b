package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
)

var daitnBin string

// TestMain builds the real binary once: the CLI tests run it as a user would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "daitn-bin")
	if err != nil {
		panic(err)
	}
	daitnBin = filepath.Join(dir, "daitn")
	args := []string{"build", "-o", daitnBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build daitn: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary to completion and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, daitnBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "DAITN_DATA=")
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// upNode starts `daitn up --local` on dir and waits for its API.
func upNode(t *testing.T, dir string, extra ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"up", "--local", "--data", dir}, extra...)
	cmd := exec.Command(daitnBin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	// An answer, not just the address file: a node killed before this one
	// left its file behind.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := oam.Dial(dir); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = c.Call(ctx, http.MethodGet, "/v1/id", nil, nil)
			cancel()
			if err == nil {
				return cmd
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("daitn up on %s did not start; output:\n%s", dir, logs.String())
	return nil
}

// connectCLI connects the node on from to the node on to through the CLI:
// `daitn id --json` on to for its TCP address, then `daitn connect` on from.
// It returns what id said of to.
func connectCLI(t *testing.T, from, to string) node.IDInfo {
	t.Helper()
	out, errOut, code := run(t, "id", "--data", to, "--json")
	var id node.IDInfo
	if err := json.Unmarshal([]byte(out), &id); code != 0 || err != nil {
		t.Fatalf("id --data %s: code %d, %v, %s", to, code, err, errOut)
	}
	for _, addr := range id.Addrs {
		if strings.Contains(addr, "/tcp/") {
			if _, errOut, code := run(t, "connect", "--data", from, addr); code != 0 {
				t.Fatalf("connect %s to %s: %s", from, addr, errOut)
			}
			return id
		}
	}
	t.Fatalf("node on %s has no TCP address: %v", to, id.Addrs)
	return id
}

func TestInitTwiceKeepsKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	out, _, code := run(t, "init", "--data", dir)
	if code != 0 || !strings.Contains(out, "identity.key") || !strings.Contains(out, "config.toml") {
		t.Fatalf("init: code %d, out %q", code, out)
	}
	k1, _ := os.ReadFile(filepath.Join(dir, "identity.key"))
	out, _, code = run(t, "init", "--data", dir)
	if code != 0 || !strings.Contains(out, "already initialised") {
		t.Fatalf("second init: code %d, out %q", code, out)
	}
	k2, _ := os.ReadFile(filepath.Join(dir, "identity.key"))
	if !bytes.Equal(k1, k2) {
		t.Fatal("second init replaced the key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("init created %d entries, want identity.key and config.toml only", len(entries))
	}
}

func TestUpIdPeersConnectStatus(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	upA := upNode(t, a)
	upNode(t, b)

	out, _, code := run(t, "id", "--data", b, "--json")
	if code != 0 {
		t.Fatalf("id: code %d", code)
	}
	var idB node.IDInfo
	if err := json.Unmarshal([]byte(out), &idB); err != nil {
		t.Fatalf("id --json is not JSON: %v\n%s", err, out)
	}
	var tcp string
	for _, addr := range idB.Addrs {
		if strings.Contains(addr, "/tcp/") {
			tcp = addr
		}
	}
	out, errOut, code := run(t, "connect", "--data", a, tcp)
	if code != 0 || !strings.Contains(out, idB.PeerID) {
		t.Fatalf("connect: code %d out %q err %q", code, out, errOut)
	}
	out, _, _ = run(t, "peers", "--data", a)
	if !strings.Contains(out, idB.PeerID) || !strings.Contains(out, "PEER") {
		t.Fatalf("peers table does not list %s:\n%s", idB.PeerID, out)
	}
	out, _, _ = run(t, "status", "--data", a)
	if !strings.Contains(out, "peers") || !strings.Contains(out, "1") {
		t.Fatalf("status:\n%s", out)
	}

	// SIGTERM: clean shutdown, exit 0, API file removed.
	if err := upA.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- upA.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("up exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("up did not stop after SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(a, oam.AddrFile)); !os.IsNotExist(err) {
		t.Fatalf("api.addr still present after shutdown: %v", err)
	}
	_, errOut, code = run(t, "id", "--data", a)
	if code == 0 || !strings.Contains(errOut, "no node is running") {
		t.Fatalf("id against a stopped node: code %d, stderr %q", code, errOut)
	}
}

func TestUpBadConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, tc := range []struct {
		name   string
		config string
		args   []string
		want   string
	}{
		{"unknown key", "[network]\nlisen = []\n", nil, "network.lisen"},
		{"bad listen flag", "", []string{"--listen", "/ip4/300.1.1.1/tcp/1"}, "/ip4/300.1.1.1/tcp/1"},
		{"bad bootstrap flag", "", []string{"--bootstrap", "/ip4/127.0.0.1/tcp/1"}, "/p2p/"},
		{"api port in use", "", []string{"--api", busy}, busy},
		{"api not loopback", "", []string{"--api", "0.0.0.0:1234"}, "loopback"},
		{"bad role", "", []string{"--roles", "wizard"}, "wizard"},
		{"missing swarm key", "", []string{"--swarm-key", "/nonexistent/key"}, "swarm_key"},
		{"missing testset", "", []string{"--testset", "/nonexistent/t10k"}, "--testset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.config != "" {
				if _, _, code := run(t, "init", "--data", dir); code != 0 {
					t.Fatal("init failed")
				}
				if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(tc.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"up", "--local", "--data", dir}, tc.args...)
			_, errOut, code := run(t, args...)
			if code == 0 {
				t.Fatal("exit code 0, want non-zero")
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q does not name %q", errOut, tc.want)
			}
		})
	}
}

func TestSwarmKeyCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "swarm.key")
	if _, _, code := run(t, "swarm-key", path); code != 0 {
		t.Fatal("swarm-key failed")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("swarm key: %v mode %v", err, fi.Mode())
	}
	if _, errOut, code := run(t, "swarm-key", path); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("second swarm-key overwrote or did not explain: %q", errOut)
	}
}
