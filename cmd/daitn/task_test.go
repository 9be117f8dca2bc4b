package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/taskpool"
)

// TestTaskPostAgentRunExec is the task pool end to end through the real
// binary: node A posts, node B runs `daitn agent run --exec` with a real
// shell command, A watches and fetches the result; a crashing command
// makes a failed task.
func TestTaskPostAgentRunExec(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	upNode(t, a)
	upNode(t, b)
	connectCLI(t, b, a)
	startAgent := func(args ...string) *syncBuffer {
		cmd := exec.Command(daitnBin, append([]string{"agent", "run", "--data", b, "--pool", "demo"}, args...)...)
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return logs
	}
	upperLog := startAgent("--skill", "upper", "--exec", "tr a-z A-Z")
	logs := []*syncBuffer{upperLog,
		startAgent("--skill", "crash", "--exec", "echo broken >&2; exit 3"),
		startAgent("--skill", "file", "--exec", "wc -c < {input}")}
	// Registered agents have joined the pool, so the postings reach them.
	deadline := time.Now().Add(30 * time.Second)
	for _, l := range logs {
		for !strings.Contains(l.String(), "running") {
			if time.Now().After(deadline) {
				t.Fatalf("agent did not start: %s", l.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	input := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(input, []byte("hello task pool\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	post := func(skill string) string {
		out, errOut, code := run(t, "task", "post", "--data", a, "--pool", "demo", "--kind", "text",
			"--skill", skill, "--input", input, "--deadline", "60s", "--tier", "gold", "--policy", "first")
		if code != 0 {
			t.Fatalf("task post: %s", errOut)
		}
		return strings.TrimSpace(out)
	}
	idUpper, idCrash, idFile := post("upper"), post("crash"), post("file")

	// watch follows the task until it ends.
	out, errOut, code := run(t, "task", "watch", "--data", a, idUpper)
	if code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("watch: code %d out %q err %q\nagent log:\n%s", code, out, errOut, upperLog)
	}
	res := filepath.Join(t.TempDir(), "out.txt")
	if _, errOut, code := run(t, "task", "result", "--data", a, idUpper, "-o", res); code != 0 {
		t.Fatalf("result: %s", errOut)
	}
	if got, _ := os.ReadFile(res); string(got) != "HELLO TASK POOL\n" {
		t.Fatalf("result file %q", got)
	}
	waitState := func(id string, want taskpool.State) taskpool.Status {
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, _, _ := run(t, "task", "show", "--data", a, "--json", id)
			var st taskpool.Status
			_ = json.Unmarshal([]byte(out), &st)
			if st.State == want {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s: state %s, want %s", id, st.State, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	st := waitState(idCrash, taskpool.StateFailed)
	if !strings.Contains(st.Reason, "exit status 3") || !strings.Contains(st.Reason, "broken") {
		t.Fatalf("crash reason %q", st.Reason)
	}
	if _, errOut, code := run(t, "task", "result", "--data", a, idCrash); code == 0 || !strings.Contains(errOut, "exit status 3") {
		t.Fatalf("result of crashed task: code %d err %q", code, errOut)
	}
	waitState(idFile, taskpool.StateDone)
	out, _, _ = run(t, "task", "result", "--data", a, idFile)
	if strings.TrimSpace(out) != "16" {
		t.Fatalf("file input result %q, want 16", out)
	}
	out, _, _ = run(t, "task", "ls", "--data", a)
	for _, id := range []string{idUpper, idCrash, idFile} {
		if !strings.Contains(out, id) {
			t.Fatalf("ls does not list %s:\n%s", id, out)
		}
	}
	// A's reputation book counts B's two results and its failure.
	out, _, code = run(t, "task", "reputation", "--data", a, "--json")
	var book []taskpool.RepRecord
	if err := json.Unmarshal([]byte(out), &book); code != 0 || err != nil || len(book) != 1 || book[0].OK != 2 || book[0].Failed != 1 {
		t.Fatalf("reputation: code %d %v %+v", code, err, book)
	}
	if out, _, _ = run(t, "task", "reputation", "--data", a); !strings.Contains(out, "AGENT") || !strings.Contains(out, book[0].Agent.String()) {
		t.Fatalf("reputation table:\n%s", out)
	}
	// Bad input is named.
	if _, errOut, code := run(t, "task", "post", "--data", a, "--pool", "demo", "--kind", "k", "--tier", "platinum"); code == 0 || !strings.Contains(errOut, "platinum") {
		t.Fatalf("bad tier: code %d err %q", code, errOut)
	}
	if _, errOut, code := run(t, "task", "approve", "--data", a, idUpper, "not-a-peer"); code == 0 || !strings.Contains(errOut, "not-a-peer") {
		t.Fatalf("bad approve: code %d err %q", code, errOut)
	}
	// Cancel an approve-policy task nobody approves.
	out, _, _ = run(t, "task", "post", "--data", a, "--pool", "demo", "--kind", "k", "--policy", "approve")
	idAp := strings.TrimSpace(out)
	if out, errOut, code := run(t, "task", "cancel", "--data", a, idAp); code != 0 || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: code %d out %q err %q", code, out, errOut)
	}
}

// TestExternalAgentAPI drives the agent endpoints as an agent written in
// another language would: postings over SSE, its own bid, work over SSE,
// the result posted back.
func TestExternalAgentAPI(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	upNode(t, a)
	upNode(t, b)
	idA := connectCLI(t, b, a)
	c, err := oam.Dial(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var reg node.AgentRegistered
	if err := c.Call(ctx, http.MethodPost, "/v1/pools/ext/agents", node.AgentRegisterRequest{Manual: true}, &reg); err != nil {
		t.Fatal(err)
	}
	base := "/v1/pools/ext/agents/" + reg.AgentID
	// A bid on a task never seen is refused with a reason.
	err = c.Call(ctx, http.MethodPost, base+"/bids", node.AgentBidRequest{Poster: idA.PeerID, TaskID: "nope", Price: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "not seen") {
		t.Fatalf("bid on unknown task: %v", err)
	}
	errs := make(chan error, 2)
	go func() {
		errs <- c.Stream(ctx, "/v1/pools/ext/postings", func(ev oam.Event) error {
			var tk taskpool.Task
			if err := json.Unmarshal(ev.Data.(json.RawMessage), &tk); err != nil {
				return err
			}
			return c.Call(ctx, http.MethodPost, base+"/bids", node.AgentBidRequest{Poster: tk.Poster, TaskID: tk.ID, Price: 1, ExpectedMs: 10}, nil)
		})
	}()
	go func() {
		errs <- c.Stream(ctx, base+"/work", func(ev oam.Event) error {
			var tk taskpool.Task
			if err := json.Unmarshal(ev.Data.(json.RawMessage), &tk); err != nil {
				return err
			}
			return c.Call(ctx, http.MethodPost, base+"/results", node.AgentResultRequest{Poster: tk.Poster, TaskID: tk.ID,
				OK: true, Output: append([]byte("ext:"), tk.Input...)}, nil)
		})
	}()
	input := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(input, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "task", "post", "--data", a, "--pool", "ext", "--kind", "k", "--input", input, "--max-price", "3")
	if code != 0 {
		t.Fatalf("post: %s", errOut)
	}
	id := strings.TrimSpace(out)
	if out, errOut, code := run(t, "task", "watch", "--data", a, id); code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("watch: %q %q", out, errOut)
	}
	out, _, _ = run(t, "task", "result", "--data", a, id)
	if out != "ext:abc" {
		t.Fatalf("result %q, want ext:abc", out)
	}
	select {
	case err := <-errs:
		t.Fatalf("stream ended early: %v", err)
	default:
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
