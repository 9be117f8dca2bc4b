package taskpool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExecHandler(t *testing.T) {
	cases := []struct {
		name    string
		cmd     string
		input   string
		timeout time.Duration
		want    string // output, or substring of the error when wantErr
		wantErr bool
	}{
		{"stdin to stdout", "tr a-z A-Z", "hello", 10 * time.Second, "HELLO", false},
		{"input as file", "wc -c < {input}", "12345", 10 * time.Second, "5\n", false},
		{"env", `printf %s "$DAITN_TASK_KIND"`, "", 10 * time.Second, "kind-x", false},
		{"crash", "echo boom >&2; exit 3", "", 10 * time.Second, "exit status 3: boom", true},
		{"hang", "sleep 30", "", 300 * time.Millisecond, "killed", true},
		{"too much output", "head -c 5000 /dev/zero", "", 10 * time.Second, "output over", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ExecHandler(c.cmd, 4096)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			start := time.Now()
			out, err := h(ctx, Task{ID: "t", Kind: "kind-x", Input: []byte(c.input)})
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want one containing %q", err, c.want)
				}
			} else if err != nil || strings.TrimSpace(string(out)) != strings.TrimSpace(c.want) {
				t.Fatalf("output %q err %v, want %q", out, err, c.want)
			}
			if el := time.Since(start); el > c.timeout+3*time.Second {
				t.Fatalf("took %v", el)
			}
		})
	}
	if _, err := ExecHandler("  ", 0); err == nil {
		t.Fatal("empty command accepted")
	}
}

// TestExecKillsProcessGroup: a child the command started in the
// background dies with it at the deadline.
func TestExecKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h, err := ExecHandler("sleep 60 & echo $! > "+pidFile+"; wait", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := h(ctx, Task{ID: "t"}); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want killed at the deadline", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Reaped or zombie both count as dead; kill(0) fails once reaped.
		err := syscall.Kill(pid, 0)
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still alive after the deadline", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
