package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/node"
)

func init() { rootCmd.AddCommand(inferCmd()) }

func inferCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "infer --skill SKILL [--pool POOL] FILE | --model ID FILE | --task ID",
		Short: "Ask the best reachable model to classify an input",
		Long: `Send FILE to the best reachable model offering --skill and print its answer:
the class, the model's confidence, which model and host answered and how long it
took. FILE is a 28x28 grayscale image (PNG or JPEG; a dark digit on a light
background is inverted to MNIST's light on dark) or 784 raw little-endian float32
values in 0..1, at most 1 MiB.

The node checks its live map with Q-FAM (is any reachable model able to meet
--min-accuracy, --max-latency and --max-price? if not, it says why), ranks the
hosts with Q-IRCE (expected latency from round-trip time, model latency and
queue, CPU load, accuracy, price) and asks the best; a host that is unreachable,
busy, lacks the weights or times out is skipped for the next (at most 3).
--model asks the host of that one model directly, without the planner.

--pool POOL posts the query to a task pool instead (hosts bid on pool "infer"
by default): the models' agents bid with their price and latency, the chosen
host answers, and the answer waits for you — on the host while your node is
offline, on your node until you read it. The task id is printed on stderr
first; if you stop waiting (Ctrl-C), read the answer later with --task ID.
FILE may be at most 64 KiB through a pool. --policy best (default) collects
bids for 250ms and picks the best; first takes the first bid.

Examples:
  daitn infer --skill classify-digits digit.png
  daitn infer --skill classify-digits --min-accuracy 0.95 --max-latency 200ms digit.png
  daitn infer --model bafkrei... digit.png --json
  daitn infer --skill classify-digits --pool infer digit.png
  daitn infer --task tabc...`,
		Args: cobra.MaximumNArgs(1),
		RunE: runInfer,
	}
	f := c.Flags()
	f.String("skill", "", "skill the model must offer, e.g. classify-digits")
	f.Float64("min-accuracy", 0, "lowest accuracy accepted, 0..1")
	f.Duration("max-latency", 0, "highest expected answer time accepted, e.g. 200ms (0: any)")
	f.Float64("max-price", 0, "highest price per query accepted (0: free models only, unless --any-price)")
	f.Bool("any-price", false, "accept any price")
	f.String("model", "", "ask this model (descriptor slot or version id) instead of choosing by skill")
	f.String("host", "", "ask only this peer (with --skill or --model)")
	f.String("pool", "", "post the query to this task pool (hosts serve \"infer\") and let models bid")
	f.String("policy", "", "with --pool: best (default; bids collected for 250ms) or first")
	f.Duration("deadline", 0, "with --pool: how long the task may wait for a model (default 10m)")
	f.String("task", "", "read the answer of an earlier --pool query by its task id")
	return c
}

func runInfer(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	req := node.InferRequest{}
	req.Skill, _ = f.GetString("skill")
	req.Model, _ = f.GetString("model")
	req.Host, _ = f.GetString("host")
	req.MinAccuracy, _ = f.GetFloat64("min-accuracy")
	req.MaxPrice, _ = f.GetFloat64("max-price")
	req.AnyPrice, _ = f.GetBool("any-price")
	if d, _ := f.GetDuration("max-latency"); d > 0 {
		req.MaxLatency = d.String()
	}
	req.Pool, _ = f.GetString("pool")
	req.Policy, _ = f.GetString("policy")
	if d, _ := f.GetDuration("deadline"); d > 0 {
		req.Deadline = d.String()
	}
	if task, _ := f.GetString("task"); task != "" {
		if len(args) > 0 || req.Skill != "" || req.Model != "" || req.Pool != "" {
			return fmt.Errorf("infer: --task reads an earlier answer; give it alone, without FILE, --skill, --model or --pool")
		}
		return waitPoolAnswer(cmd, task)
	}
	if req.Skill == "" && req.Model == "" {
		return fmt.Errorf("infer: give --skill (e.g. classify-digits) or --model ID")
	}
	if len(args) != 1 {
		return fmt.Errorf("infer: give the FILE to classify")
	}
	limit := int64(infer.MaxInputBytes)
	if req.Pool != "" {
		limit = infer.MaxPoolInputBytes
	}
	st, err := os.Stat(args[0])
	if err != nil {
		return fmt.Errorf("infer: %w", err)
	}
	if st.Size() > limit {
		return fmt.Errorf("infer: %s is %d bytes, an input may be at most %d", args[0], st.Size(), limit)
	}
	if req.Input, err = os.ReadFile(args[0]); err != nil {
		return fmt.Errorf("infer: %w", err)
	}
	if req.Pool != "" {
		req.Detach = true
		var p node.InferPending
		if err := callNode(cmd, http.MethodPost, "/v1/infer", req, &p); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "task %s posted to pool %s; if you stop waiting, read the answer later with: daitn infer --task %s\n", p.Task, req.Pool, p.Task)
		return waitPoolAnswer(cmd, p.Task)
	}
	var res node.InferResponse
	if err := callNode(cmd, http.MethodPost, "/v1/infer", req, &res); err != nil {
		return err
	}
	return printInferResult(cmd, res)
}

// waitPoolAnswer waits for a pool query's answer, a minute per request,
// and prints it.
func waitPoolAnswer(cmd *cobra.Command, task string) error {
	c, err := apiFromCmd(cmd)
	if err != nil {
		return err
	}
	for {
		resp, err := c.Do(cmd.Context(), http.MethodGet, "/v1/infer/tasks/"+url.PathEscape(task)+"?wait=1m", nil)
		if err != nil {
			return err
		}
		var res node.InferResponse
		var p node.InferPending
		var dst any = &res
		if resp.StatusCode == http.StatusAccepted {
			dst = &p
		}
		err = json.NewDecoder(resp.Body).Decode(dst)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("infer: decode answer for task %s: %w", task, err)
		}
		if resp.StatusCode == http.StatusAccepted {
			continue
		}
		return printInferResult(cmd, res)
	}
}

func printInferResult(cmd *cobra.Command, res node.InferResponse) error {
	if jsonOutput(cmd) {
		return printJSON(cmd, res)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "class       %d\n", res.Class)
	fmt.Fprintf(w, "confidence  %.3f\n", res.Confidence)
	fmt.Fprintf(w, "model       %s (%s)\n", res.Name, res.Model)
	fmt.Fprintf(w, "host        %s\n", res.Host)
	fmt.Fprintf(w, "latency     %s (host %s)\n", roundDur(res.Took), roundDur(res.HostTime))
	if res.Task != "" {
		fmt.Fprintf(w, "task        %s\n", res.Task)
	}
	if len(res.Tried) > 1 {
		for _, a := range res.Tried[:len(res.Tried)-1] {
			fmt.Fprintf(w, "skipped     %s: %s %s\n", a.Host, a.Status, a.Error)
		}
	}
	return nil
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
