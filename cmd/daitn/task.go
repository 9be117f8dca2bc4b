package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/taskpool"
)

func init() { rootCmd.AddCommand(taskCmd()) }

func taskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Post tasks to a pool and follow them: post, ls, show, watch, approve, cancel, result",
		Long: `A task pool is the reversed way to find a model or agent: post what you need on
a pool, agents that fit bid, and your policy picks one (approve: you decide with
` + "`daitn task approve`" + `; first: the first acceptable bid; best: bids are collected
for a window and scored on price, expected time, load and reputation). The winner
holds a renewable lease; if it dies the task goes back to the pool. Results are kept
by your node until you collect them.`,
	}
	cmd.AddCommand(taskPostCmd(), taskLsCmd(), taskShowCmd(), taskWatchCmd(), taskApproveCmd(), taskCancelCmd(), taskResultCmd(), taskReputationCmd())
	return cmd
}

func taskPostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "post --pool POOL --kind KIND [--input FILE|--input-cid CID]",
		Short: "Post a task and print its id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			req := node.TaskPostRequest{}
			req.Pool, _ = f.GetString("pool")
			req.Kind, _ = f.GetString("kind")
			req.Skill, _ = f.GetString("skill")
			req.InputCID, _ = f.GetString("input-cid")
			req.MaxPrice, _ = f.GetFloat64("max-price")
			req.Tier, _ = f.GetString("tier")
			req.Policy, _ = f.GetString("policy")
			req.ID, _ = f.GetString("id")
			req.Eligible, _ = f.GetStringSlice("eligible")
			for flag, dst := range map[string]*string{"deadline": &req.Deadline, "lease": &req.Lease, "bid-window": &req.BidWindow} {
				if d, _ := f.GetDuration(flag); d != 0 {
					if d < 0 {
						return fmt.Errorf("--%s %v: want a positive duration", flag, d)
					}
					*dst = d.String()
				}
			}
			if req.Pool == "" || req.Kind == "" {
				return fmt.Errorf("--pool and --kind are required")
			}
			if in, _ := f.GetString("input"); in != "" {
				if req.InputCID != "" {
					return fmt.Errorf("--input and --input-cid are exclusive, give one")
				}
				st, err := os.Stat(in)
				if err != nil {
					return fmt.Errorf("--input %s: %w", in, err)
				}
				if st.Size() > taskpool.MaxInlineInput {
					return fmt.Errorf("--input %s: %d bytes, at most %d go inline; `daitn add` it and use --input-cid", in, st.Size(), taskpool.MaxInlineInput)
				}
				b, err := os.ReadFile(in)
				if err != nil {
					return fmt.Errorf("--input %s: %w", in, err)
				}
				req.Input = b
			}
			var t taskpool.Task
			if err := callNode(cmd, http.MethodPost, "/v1/tasks", req, &t); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("pool", "", "pool to post on (required)")
	f.String("kind", "", "kind of work, e.g. classify (required)")
	f.String("skill", "", "skill an agent must have")
	f.String("input", "", "file sent inline as the task input (at most 64 KiB)")
	f.String("input-cid", "", "CID of a larger input stored with `daitn add`")
	f.Duration("deadline", 0, "time until the task must be done (default 10m)")
	f.Float64("max-price", 0, "highest price accepted (0 = no limit)")
	f.String("tier", "bronze", "gold, silver or bronze: who is served first when agents are scarce")
	f.String("policy", "first", "approve, first or best")
	f.Duration("lease", 0, "lease the holder renews (default 30s)")
	f.Duration("bid-window", 0, "how long best collects bids (default 500ms)")
	f.String("id", "", "task id (default random)")
	f.StringSlice("eligible", nil, "only these peer IDs may bid (repeatable)")
	return cmd
}

func taskLsCmd() *cobra.Command {
	return listCmd("ls", "List the tasks this node posted", "/v1/tasks",
		"ID\tPOOL\tKIND\tPOLICY\tTIER\tSTATE\tHOLDER\tBIDS\tDEADLINE",
		func(s taskpool.Status) string {
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s", s.Task.ID, s.Task.Pool, s.Task.Kind, s.Task.Policy,
				s.Task.Tier, s.State, shortPeer(s.Holder), len(s.Bids), time.UnixMilli(s.Task.Deadline).Format(time.TimeOnly))
		})
}

func taskReputationCmd() *cobra.Command {
	return listCmd("reputation", "List this node's reputation book of agents (used by the best policy)", "/v1/reputation",
		"AGENT\tOK\tFAILED\tSCORE\tUPDATED",
		func(r taskpool.RepRecord) string {
			return fmt.Sprintf("%s\t%d\t%d\t%.3f\t%s", r.Agent, r.OK, r.Failed, r.Score, r.Updated.Local().Format(time.DateTime))
		})
}

func shortPeer(p string) string {
	if len(p) > 12 {
		return "…" + p[len(p)-8:]
	}
	return p
}

func taskShowCmd() *cobra.Command {
	return showCmd("show ID", "Show a posted task: state, holder, bids, history, result", "/v1/tasks/", func(w io.Writer, s taskpool.Status) error {
		fmt.Fprintf(w, "id:       %s\npool:     %s\nkind:     %s\nskill:    %s\npolicy:   %s\ntier:     %s\nstate:    %s\n",
			s.Task.ID, s.Task.Pool, s.Task.Kind, s.Task.Skill, s.Task.Policy, s.Task.Tier, s.State)
		if s.Holder != "" {
			fmt.Fprintf(w, "holder:   %s (epoch %d)\n", s.Holder, s.Epoch)
		}
		fmt.Fprintf(w, "deadline: %s\n", time.UnixMilli(s.Task.Deadline).Format(time.RFC3339))
		if s.Reason != "" {
			fmt.Fprintf(w, "reason:   %s\n", s.Reason)
		}
		if len(s.Bids) > 0 {
			tw := newTable(w)
			fmt.Fprintln(tw, "BIDDER\tPRICE\tEXPECTED\tLOAD")
			for _, b := range s.Bids {
				fmt.Fprintf(tw, "%s\t%g\t%v\t%.2f\n", b.Bidder, b.Price, time.Duration(b.ExpectedMs)*time.Millisecond, b.Load)
			}
			tw.Flush()
		}
		for _, a := range s.History {
			fmt.Fprintf(w, "attempt:  epoch %d by %s: %s\n", a.Epoch, a.Agent, a.Outcome)
		}
		if s.Result != nil {
			fmt.Fprintf(w, "result:   ok=%v, %d bytes (daitn task result %s -o FILE)\n", s.Result.OK, len(s.Result.Output), s.Task.ID)
		}
		return nil
	})
}

func taskWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a task's state live until it ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			return c.Stream(cmd.Context(), "/v1/tasks/"+url.PathEscape(args[0])+"/watch", func(ev oam.Event) error {
				raw, _ := ev.Data.(json.RawMessage)
				var e taskpool.Event
				if err := json.Unmarshal(raw, &e); err != nil {
					return nil
				}
				if jsonOutput(cmd) {
					_ = printJSON(cmd, e)
				} else {
					fmt.Fprintf(w, "%s  %-9s %s %s\n", e.Time.Format("15:04:05.000"), e.State, shortPeer(e.Holder), e.Detail)
				}
				if e.State.Terminal() {
					return io.EOF
				}
				return nil
			})
		},
	}
}

func taskApproveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "approve ID PEER",
		Short: "Assign a task to a peer that bid on it (approve policy)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s taskpool.Status
			if err := callNode(cmd, http.MethodPost, "/v1/tasks/"+url.PathEscape(args[0])+"/approve", node.TaskApproveRequest{Peer: args[1]}, &s); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, s)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s assigned to %s (epoch %d)\n", s.Task.ID, s.Holder, s.Epoch)
			return nil
		},
	}
}

func taskCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Withdraw a task; its holder is told to stop",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s taskpool.Status
			if err := callNode(cmd, http.MethodPost, "/v1/tasks/"+url.PathEscape(args[0])+"/cancel", nil, &s); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, s)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", s.Task.ID, s.State)
			return nil
		},
	}
}

func taskResultCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "result ID [-o FILE]",
		Short: "Write a finished task's output to FILE (or stdout)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			path := "/v1/tasks/" + url.PathEscape(args[0]) + "/result"
			if col, _ := cmd.Flags().GetBool("collect"); col {
				path += "?collect=1"
			}
			var r taskpool.Result
			if err := c.Call(cmd.Context(), http.MethodGet, path, nil, &r); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, r)
			}
			if !r.OK {
				return fmt.Errorf("task %s failed on %s: %s", r.TaskID, r.Agent, r.Error)
			}
			out, _ := cmd.Flags().GetString("output")
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(r.Output)
				return err
			}
			if err := oam.WriteFileAtomic(out, r.Output, 0o644); err != nil {
				return fmt.Errorf("write result to %s: %w", out, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d bytes from %s to %s\n", len(r.Output), r.Agent, out)
			return nil
		},
	}
	cmd.Flags().StringP("output", "o", "", "file to write the output to (default stdout)")
	cmd.Flags().Bool("collect", false, "remove the task and result from the node afterwards")
	return cmd
}
