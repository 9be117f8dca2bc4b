package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/taskpool"
)

func init() { rootCmd.AddCommand(agentCmd()) }

func agentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Turn a program into a task-pool agent",
	}
	cmd.AddCommand(agentRunCmd())
	return cmd
}

func agentRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run --pool POOL --exec CMD [--skill S]",
		Short: "Bid on matching tasks and run CMD for each task won",
		Long: `Registers an agent with the running node. The node bids on postings that match
(--skill, --kind, --price against the task's max price) and holds the lease while
CMD runs. For each task won, CMD runs under /bin/sh with the task input on stdin,
or, if CMD contains {input}, with {input} replaced by the path of a file holding
the input. Its stdout is the result; a non-zero exit status reports failure with
the end of its stderr. CMD (and everything it started) is killed at the task
deadline. Stops on Ctrl-C; tasks still running then go back to their pools when
their leases expire.`,
		Example: `  daitn agent run --pool demo --skill upper --exec 'tr a-z A-Z'
  daitn agent run --pool demo --exec 'wc -c < {input}' --capacity 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			pool, _ := f.GetString("pool")
			command, _ := f.GetString("exec")
			if pool == "" || command == "" {
				return fmt.Errorf("--pool and --exec are required")
			}
			req := node.AgentRegisterRequest{}
			req.Skill, _ = f.GetString("skill")
			req.Kinds, _ = f.GetStringSlice("kind")
			req.Price, _ = f.GetFloat64("price")
			req.Capacity, _ = f.GetInt("capacity")
			exp, _ := f.GetDuration("expected")
			req.ExpectedMs = exp.Milliseconds()
			maxOut, _ := f.GetInt("max-output")
			h, err := taskpool.ExecHandler(command, maxOut)
			if err != nil {
				return err
			}
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			var reg node.AgentRegistered
			base := "/v1/pools/" + url.PathEscape(pool) + "/agents"
			if err := c.Call(ctx, http.MethodPost, base, req, &reg); err != nil {
				return fmt.Errorf("register agent: %w", err)
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "agent %s on pool %s as %s, running %q\n", reg.AgentID, pool, reg.PeerID, command)
			var wg sync.WaitGroup
			defer wg.Wait()
			var outMu sync.Mutex
			err = c.Stream(ctx, base+"/"+reg.AgentID+"/work", func(ev oam.Event) error {
				raw, _ := ev.Data.(json.RawMessage)
				var t taskpool.Task
				if err := json.Unmarshal(raw, &t); err != nil {
					return nil
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					tctx, cancel := context.WithDeadline(ctx, t.DeadlineTime())
					defer cancel()
					start := time.Now()
					out, herr := h(tctx, t)
					res := node.AgentResultRequest{Poster: t.Poster, TaskID: t.ID, OK: herr == nil, Output: out}
					if herr != nil {
						res.Error = herr.Error()
					}
					// Report even if we are stopping: the node still holds the lease.
					rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
					defer rcancel()
					perr := c.Call(rctx, http.MethodPost, base+"/"+reg.AgentID+"/results", res, nil)
					outMu.Lock()
					defer outMu.Unlock()
					switch {
					case perr != nil:
						fmt.Fprintf(errw, "task %s: result not accepted: %v\n", t.ID, perr)
					case herr != nil:
						fmt.Fprintf(errw, "task %s: failed after %v: %v\n", t.ID, time.Since(start).Round(time.Millisecond), herr)
					default:
						fmt.Fprintf(errw, "task %s: done in %v, %d bytes\n", t.ID, time.Since(start).Round(time.Millisecond), len(out))
					}
				}()
				return nil
			})
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.String("pool", "", "pool to work on (required)")
	f.String("exec", "", "shell command run for each task (required)")
	f.String("skill", "", "only tasks asking for this skill")
	f.StringSlice("kind", nil, "only tasks of these kinds (repeatable)")
	f.Float64("price", 0, "price bid; tasks whose max price is lower are skipped")
	f.Int("capacity", 1, "tasks run at once")
	f.Duration("expected", time.Second, "expected time per task, announced in bids")
	f.Int("max-output", taskpool.DefaultMaxResult, "largest stdout accepted as a result, in bytes")
	return cmd
}
