package taskpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ExecHandler turns a shell command into a Handler. The task input goes to
// the command's stdin, or, if the command contains {input}, into a
// temporary file whose path replaces {input}. Stdout (at most maxOutput
// bytes) is the result; a non-zero exit status is a failure whose error
// carries the tail of stderr. The command runs in its own process group,
// and the whole group is killed when the context ends (task deadline,
// cancel, lost lease), so a hanging command and its children cannot
// outlive the task. The environment gets DAITN_TASK_ID, DAITN_TASK_KIND,
// DAITN_TASK_SKILL and DAITN_INPUT_CID.
func ExecHandler(command string, maxOutput int) (Handler, error) {
	if strings.TrimSpace(command) == "" {
		return nil, errors.New("exec: command is empty")
	}
	if maxOutput <= 0 {
		maxOutput = DefaultMaxResult
	}
	return func(ctx context.Context, t Task) ([]byte, error) {
		cmdline := command
		var stdin io.Reader = bytes.NewReader(t.Input)
		if strings.Contains(command, "{input}") {
			f, err := os.CreateTemp("", "daitn-input-*")
			if err != nil {
				return nil, fmt.Errorf("exec: input file: %w", err)
			}
			defer os.Remove(f.Name())
			if _, err := f.Write(t.Input); err != nil {
				f.Close()
				return nil, fmt.Errorf("exec: write input file: %w", err)
			}
			if err := f.Close(); err != nil {
				return nil, fmt.Errorf("exec: write input file: %w", err)
			}
			cmdline = strings.ReplaceAll(command, "{input}", shellQuote(f.Name()))
			stdin = nil
		}
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error {
			// Negative pid: the whole process group.
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		cmd.WaitDelay = time.Second
		cmd.Stdin = stdin
		cmd.Env = append(os.Environ(),
			"DAITN_TASK_ID="+t.ID, "DAITN_TASK_KIND="+t.Kind,
			"DAITN_TASK_SKILL="+t.Skill, "DAITN_INPUT_CID="+t.InputCID)
		stdout := &limitedBuffer{max: maxOutput}
		stderr := &limitedBuffer{max: 4096, keepTail: true}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		err := cmd.Run()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("exec %q: killed: %w", command, context.Cause(ctx))
		}
		if stdout.over {
			return nil, fmt.Errorf("exec %q: output over %d bytes", command, maxOutput)
		}
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if msg != "" {
				return nil, fmt.Errorf("exec %q: %w: %s", command, err, msg)
			}
			return nil, fmt.Errorf("exec %q: %w", command, err)
		}
		return stdout.Bytes(), nil
	}, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// limitedBuffer keeps at most max bytes: the head (stdout, then flags
// overflow) or the tail (stderr). It deliberately has no ReadFrom, so
// os/exec's copy goes through Write.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	over     bool
	keepTail bool
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.keepTail {
		b.buf.Write(p)
		if b.buf.Len() > b.max {
			tail := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-b.max:]...)
			b.buf.Reset()
			b.buf.Write(tail)
		}
		return n, nil
	}
	if b.buf.Len()+len(p) > b.max {
		b.over = true
		p = p[:max(0, b.max-b.buf.Len())]
	}
	b.buf.Write(p)
	return n, nil
}
