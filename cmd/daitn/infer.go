package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/node"
)

func init() { rootCmd.AddCommand(inferCmd()) }

func inferCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "infer --skill SKILL FILE | --model ID FILE",
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

Examples:
  daitn infer --skill classify-digits digit.png
  daitn infer --skill classify-digits --min-accuracy 0.95 --max-latency 200ms digit.png
  daitn infer --model bafkrei... digit.png --json`,
		Args: cobra.ExactArgs(1),
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
	if req.Skill == "" && req.Model == "" {
		return fmt.Errorf("infer: give --skill (e.g. classify-digits) or --model ID")
	}
	st, err := os.Stat(args[0])
	if err != nil {
		return fmt.Errorf("infer: %w", err)
	}
	if st.Size() > infer.MaxInputBytes {
		return fmt.Errorf("infer: %s is %d bytes, an input may be at most %d", args[0], st.Size(), infer.MaxInputBytes)
	}
	if req.Input, err = os.ReadFile(args[0]); err != nil {
		return fmt.Errorf("infer: %w", err)
	}
	var res node.InferResponse
	if err := callNode(cmd, http.MethodPost, "/v1/infer", req, &res); err != nil {
		return err
	}
	if jsonOutput(cmd) {
		return printJSON(cmd, res)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "class       %d\n", res.Class)
	fmt.Fprintf(w, "confidence  %.3f\n", res.Confidence)
	fmt.Fprintf(w, "model       %s (%s)\n", res.Name, res.Model)
	fmt.Fprintf(w, "host        %s\n", res.Host)
	fmt.Fprintf(w, "latency     %s (host %s)\n", roundDur(res.Took), roundDur(res.HostTime))
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
