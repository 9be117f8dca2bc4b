package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
)

func init() {
	rootCmd.AddCommand(dataCmd(), modelCmd(), descriptorCmd(), findCmd())
}

func dataCmd() *cobra.Command {
	c := &cobra.Command{Use: "data", Short: "Publish and manage datasets"}
	c.AddCommand(dataAddCmd(), dataUpdateCmd(), dataLsCmd())
	return c
}

func dataAddCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "add DIR|FILE --task T --modality M | --mnist-shard K/N [--non-iid]",
		Short: "Measure a dataset and publish its signed descriptor",
		Long: `Measure the data at DIR or FILE on this machine — sample count, size, label
distribution, a MinHash content sketch and the last-updated time, computed from the
data itself — and publish it as a signed data descriptor: into the DHT (found by
capability, e.g. data/task=digits-classification), and on gossip. The node watches
the path and republishes when the data changes. The data itself never leaves.

Understood layouts: an ImageFolder directory (one subfolder per label, one file per
sample), CSV or JSONL with a label column (--label-column, default "label"), and
MNIST idx files (*-images-idx3-ubyte[.gz] with their labels file).

--mnist-shard K/N instead writes shard K of N (1-based) of the real MNIST training
set under the node's data directory and publishes it (IID, or the FedAvg paper's
pathological split with --non-iid); the node needs the data role.

Examples:
  daitn data add --mnist-shard 3/10
  daitn data add ./mnist-shard-3 --task digits-classification --modality image
  daitn data add ./reviews.jsonl --task sentiment --modality text --label-column stars \
      --policy private --allow-peer 12D3KooW... --seal data.label_dist`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if shard, _ := cmd.Flags().GetString("mnist-shard"); shard != "" {
				if len(args) > 0 {
					return fmt.Errorf("data add: give either a path or --mnist-shard, not both")
				}
				nonIID, _ := cmd.Flags().GetBool("non-iid")
				return addMNISTShard(cmd, shard, nonIID)
			}
			if len(args) != 1 {
				return fmt.Errorf("data add: want a path (DIR or FILE) or --mnist-shard K/N")
			}
			p, err := filepath.Abs(args[0])
			if err != nil {
				return fmt.Errorf("path %q: %w", args[0], err)
			}
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("data add: %w", err)
			}
			f := cmd.Flags()
			task, _ := f.GetString("task")
			modality, _ := f.GetString("modality")
			if task == "" || modality == "" {
				return fmt.Errorf("data add: --task and --modality are required (e.g. --task digits-classification --modality image)")
			}
			d := &descriptors.Descriptor{Header: descriptors.Header{Kind: descriptors.KindData}, Data: &descriptors.Data{Task: task, Modality: modality}}
			d.Name, _ = f.GetString("name")
			d.Data.Policy.Mode, _ = f.GetString("policy")
			d.Data.Policy.AllowPeers, _ = f.GetStringSlice("allow-peer")
			if d.Data.Price, err = priceFlags(cmd); err != nil {
				return err
			}
			req := node.PublishRequest{Descriptor: d, Path: p}
			req.Format, _ = f.GetString("format")
			req.LabelColumn, _ = f.GetString("label-column")
			req.Seal, _ = f.GetStringSlice("seal")
			return publishAndPrint(cmd, req)
		},
	}
	f := c.Flags()
	f.String("mnist-shard", "", "publish shard K/N (1-based) of the real MNIST training set instead of a path")
	f.Bool("non-iid", false, "with --mnist-shard: the pathological non-IID split (two digits per shard)")
	f.String("task", "", "task the data is for, e.g. digits-classification (required)")
	f.String("modality", "", "image, text, tabular, audio, ... (required)")
	f.String("name", "", "descriptor name (default: the path's base name)")
	f.String("format", "", "imagefolder, csv, jsonl or mnist-idx (default: detect)")
	f.String("label-column", "", `CSV/JSONL label column (default "label")`)
	f.String("policy", descriptors.PolicyTrainInPlace, "open, train-in-place or private")
	f.StringSlice("allow-peer", nil, "peer IDs allowed under --policy private")
	f.StringSlice("seal", nil, "fields to publish only as commitments, e.g. data.label_dist,data.samples")
	addPriceFlags(c, "credit/epoch")
	return c
}

func addPriceFlags(c *cobra.Command, unit string) {
	c.Flags().Float64("price", 0, "price per --price-unit (0 = free)")
	c.Flags().String("price-unit", unit, "unit of --price")
}

func priceFlags(cmd *cobra.Command) (*descriptors.Price, error) {
	if !cmd.Flags().Changed("price") {
		return nil, nil
	}
	amount, _ := cmd.Flags().GetFloat64("price")
	unit, _ := cmd.Flags().GetString("price-unit")
	if amount < 0 {
		return nil, fmt.Errorf("--price %v: want a number >= 0", amount)
	}
	return &descriptors.Price{Amount: amount, Unit: unit}, nil
}

func dataUpdateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "update NAME",
		Short: "Re-measure a published dataset now and republish it",
		Long: `Re-measure the data behind the data descriptor NAME and publish the next
version (the node also does this by itself when the files change).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var sd descriptors.Signed
			if err := callNode(cmd, http.MethodPost, "/v1/descriptors/update", node.UpdateRequest{Name: args[0]}, &sd); err != nil {
				return err
			}
			return printSigned(cmd, &sd)
		},
	}
}

func dataLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the descriptors this node publishes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return listDescriptors(cmd, false)
		},
	}
}

func listDescriptors(cmd *cobra.Command, all bool) error {
	api, err := apiFromCmd(cmd)
	if err != nil {
		return err
	}
	path := "/v1/descriptors"
	if all {
		path += "?all=1"
	}
	var list []*descriptors.Signed
	if err := api.Call(cmd.Context(), http.MethodGet, path, nil, &list); err != nil {
		return err
	}
	if jsonOutput(cmd) {
		return printJSON(cmd, list)
	}
	tw := newTable(cmd.OutOrStdout())
	fmt.Fprintln(tw, "KIND\tNAME\tSEQ\tOWNER\tSUMMARY\tEXPIRES\tSLOT")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Kind, s.Name, s.Seq, descPeer(s.Owner), summary(&s.Descriptor), s.Expires.Local().Format(time.DateTime), s.Slot)
	}
	return tw.Flush()
}

func modelCmd() *cobra.Command {
	c := &cobra.Command{Use: "model", Short: "Publish model descriptors"}
	add := &cobra.Command{
		Use:   "add [--file model.json|model.toml] [flags]",
		Short: "Publish a signed model descriptor",
		Long: `Publish a model descriptor: what the model does (skills), its architecture, size,
claimed accuracy, latency, price and, if it is shared, the transfer root of its
weights. Give the fields as flags, or as a JSON/TOML file in the same shape as
` + "`daitn descriptor show ID --json`" + ` prints (flags override the file).

With --weights FILE (a model file as ` + "`daitn train get`" + ` writes it) the node stores the
weights, publishes their root and serves queries for the model (` + "`daitn infer`" + `).

Examples:
  daitn model add --name mnist-2nn --version 1.0 --weights model.bin \
      --skill classify-digits --task digits-classification --modality image --accuracy 0.97
  daitn model add --name mnist-mlp --version 1.0 --arch mlp-784-128-10 \
      --skill classify-digits --task digits-classification --modality image --accuracy 0.97
  daitn model add --file model.toml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d := &descriptors.Descriptor{}
			if file, _ := cmd.Flags().GetString("file"); file != "" {
				var err error
				if d, err = readDescriptorFile(file); err != nil {
					return err
				}
			}
			if d.Kind == "" {
				d.Kind = descriptors.KindModel
			}
			if d.Kind != descriptors.KindModel {
				return fmt.Errorf("model add: file describes a %q, want a model (use `daitn descriptor publish` for other kinds)", d.Kind)
			}
			if d.Model == nil {
				d.Model = &descriptors.Model{}
			}
			m := d.Model
			f := cmd.Flags()
			str := func(flag string, dst *string) {
				if f.Changed(flag) {
					*dst, _ = f.GetString(flag)
				}
			}
			str("name", &d.Name)
			str("version", &m.Version)
			str("arch", &m.Architecture)
			str("task", &m.Task)
			str("modality", &m.Modality)
			str("weights-root", &m.WeightsRoot)
			str("description", &m.Description)
			if f.Changed("skill") {
				m.Skills, _ = f.GetStringSlice("skill")
			}
			if f.Changed("params") {
				m.Params, _ = f.GetInt64("params")
			}
			if f.Changed("size") {
				m.SizeBytes, _ = f.GetInt64("size")
			}
			if f.Changed("accuracy") {
				m.ClaimedAccuracy, _ = f.GetFloat64("accuracy")
			}
			if f.Changed("latency-ms") {
				m.LatencyMs, _ = f.GetFloat64("latency-ms")
			}
			p, err := priceFlags(cmd)
			if err != nil {
				return err
			}
			if p != nil {
				m.Price = p
			}
			if wf, _ := f.GetString("weights"); wf != "" {
				if f.Changed("weights-root") {
					return fmt.Errorf("model add: give --weights FILE or --weights-root CID, not both")
				}
				if err := attachWeights(cmd, wf, m); err != nil {
					return err
				}
			}
			seal, _ := f.GetStringSlice("seal")
			return publishAndPrint(cmd, node.PublishRequest{Descriptor: d, Seal: seal})
		},
	}
	f := add.Flags()
	f.String("file", "", "read the descriptor from a JSON or TOML file")
	f.String("name", "", "descriptor name (required)")
	f.String("version", "", "model version (required)")
	f.String("arch", "", "architecture, e.g. mnist-2nn (required unless --weights gives it)")
	f.StringSlice("skill", nil, "skill offered, e.g. classify-digits (repeatable; at least one)")
	f.String("task", "", "task it was trained for")
	f.String("modality", "", "input modality")
	f.Int64("params", 0, "parameter count")
	f.Int64("size", 0, "size of the weights in bytes")
	f.Float64("accuracy", 0, "claimed accuracy in [0,1]")
	f.Float64("latency-ms", 0, "typical latency per query")
	f.String("weights-root", "", "transfer root CID of the weights, if shared")
	f.String("weights", "", "a model file (as daitn train get writes it): add it to this node's store, set --weights-root, and fill --arch, --params and --size from it; the node then answers queries with it")
	f.String("description", "", "free text")
	f.StringSlice("seal", nil, "fields to publish only as commitments")
	addPriceFlags(add, "credit/query")
	c.AddCommand(add)
	return c
}

// readDescriptorFile reads a descriptor from JSON or TOML (by extension).
// TOML is converted to JSON first so both use the same snake_case names and
// unknown keys are reported the same way.
func readDescriptorFile(path string) (*descriptors.Descriptor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > descriptors.MaxEnvelopeSize*4 {
		return nil, fmt.Errorf("%s: %d bytes is too large for a descriptor (limit %d)", path, len(b), descriptors.MaxEnvelopeSize*4)
	}
	if strings.EqualFold(filepath.Ext(path), ".toml") {
		var m map[string]any
		if _, err := toml.Decode(string(b), &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if b, err = json.Marshal(m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	// Accept what `descriptor show --json` prints: its id and slot are
	// derived, so they are read and dropped; anything else unknown is a typo.
	var in struct {
		descriptors.Descriptor
		ID   json.RawMessage `json:"id"`
		Slot json.RawMessage `json:"slot"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := in.Descriptor
	// A new version gets fresh times; the owner must be this node anyway.
	d.Issued, d.Expires, d.Owner = time.Time{}, time.Time{}, ""
	return &d, nil
}

func publishAndPrint(cmd *cobra.Command, req node.PublishRequest) error {
	var sd descriptors.Signed
	if err := callNode(cmd, http.MethodPost, "/v1/descriptors", req, &sd); err != nil {
		return err
	}
	return printSigned(cmd, &sd)
}

func descriptorCmd() *cobra.Command {
	c := &cobra.Command{Use: "descriptor", Aliases: []string{"desc"}, Short: "Show, list and publish signed descriptors"}
	show := &cobra.Command{
		Use:   "show ID [--json] [--a2a]",
		Short: "Show one descriptor by its id or slot",
		Long: `Show a descriptor known to the node (or fetched from the DHT by slot). ID is
the version id or the stable slot id printed by ` + "`daitn find`" + `. --a2a prints a
model descriptor as an A2A Agent Card (JSON) for agent tools.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			path := "/v1/descriptors/" + url.PathEscape(args[0])
			if a2a, _ := cmd.Flags().GetBool("a2a"); a2a {
				var card descriptors.AgentCard
				if err := api.Call(cmd.Context(), http.MethodGet, path+"?a2a=1", nil, &card); err != nil {
					return err
				}
				return printJSON(cmd, card)
			}
			var sd descriptors.Signed
			if err := api.Call(cmd.Context(), http.MethodGet, path, nil, &sd); err != nil {
				return err
			}
			return printSigned(cmd, &sd)
		},
	}
	show.Flags().Bool("a2a", false, "print a model as an A2A Agent Card")
	ls := &cobra.Command{
		Use:   "ls [--all]",
		Short: "List own descriptors, or with --all every live descriptor the node knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, _ := cmd.Flags().GetBool("all")
			return listDescriptors(cmd, all)
		},
	}
	ls.Flags().Bool("all", false, "everything heard, not only own")
	publish := &cobra.Command{
		Use:   "publish FILE",
		Short: "Publish a descriptor of any kind (compute, testset, ...) from a JSON/TOML file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := readDescriptorFile(args[0])
			if err != nil {
				return err
			}
			seal, _ := cmd.Flags().GetStringSlice("seal")
			return publishAndPrint(cmd, node.PublishRequest{Descriptor: d, Seal: seal})
		},
	}
	publish.Flags().StringSlice("seal", nil, "fields to publish only as commitments")
	reveal := &cobra.Command{
		Use:   "reveal ID FIELD",
		Short: "Print the reveal of a sealed field of one of our descriptors (hand it to a chosen peer)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rv descriptors.Reveal
			if err := callNode(cmd, http.MethodGet, "/v1/descriptors/"+url.PathEscape(args[0])+"/reveal?field="+url.QueryEscape(args[1]), nil, &rv); err != nil {
				return err
			}
			return printJSON(cmd, rv)
		},
	}
	verify := &cobra.Command{
		Use:   "verify REVEAL.json",
		Short: "Check a reveal someone gave you against the signed descriptor's commitment",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var rv descriptors.Reveal
			if err := json.Unmarshal(b, &rv); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var out node.VerifyRevealResponse
			if err := callNode(cmd, http.MethodPost, "/v1/descriptors/verify", rv, &out); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reveal of %s matches the commitment\n", rv.Field)
			return printJSON(cmd, out.Descriptor)
		},
	}
	rm := &cobra.Command{
		Use:   "rm ID",
		Short: "Stop publishing one of this node's descriptors (others' copies lapse at expiry)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var sum node.DescriptorSummary
			if err := callNode(cmd, http.MethodDelete, "/v1/descriptors/"+url.PathEscape(args[0]), nil, &sum); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, sum)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s %q (slot %s)\n", sum.Kind, sum.Name, sum.Slot)
			return nil
		},
	}
	c.AddCommand(show, ls, publish, reveal, verify, rm)
	return c
}

func findCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "find data|model|compute|testset [flags]",
		Short: "Find datasets, models, compute or test sets across the network",
		Long: `Search what gossip has delivered and look up capability keys in the DHT, merge
the two and show freshness (AGE is the age of information: time since the data last
changed, or since the descriptor was issued).

Examples:
  daitn find data --task digits-classification --min-samples 5000 --max-age 24h
  daitn find model --skill classify-digits --json
  daitn find testset --task digits-classification --source dht`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"data", "model", "compute", "testset"},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := descriptors.Kind(args[0])
			if !kind.Valid() {
				return fmt.Errorf("find %q: want data, model, compute or testset", args[0])
			}
			v := url.Values{"kind": {string(kind)}}
			f := cmd.Flags()
			for _, name := range []string{"task", "skill", "modality", "role", "name", "owner", "source", "timeout", "max-age"} {
				if s, _ := f.GetString(name); s != "" {
					v.Set(strings.ReplaceAll(name, "-", "_"), s)
				}
			}
			if n, _ := f.GetInt64("min-samples"); n != 0 {
				v.Set("min_samples", strconv.FormatInt(n, 10))
			}
			if _, _, err := node.ParseFindQuery(v); err != nil {
				return err
			}
			var res []descriptors.Result
			if err := callNode(cmd, http.MethodGet, "/v1/find?"+v.Encode(), nil, &res); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, res)
			}
			if len(res) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "nothing found")
				return nil
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tOWNER\tSUMMARY\tAGE\tSEQ\tSOURCES\tSLOT")
			for _, r := range res {
				d := r.Desc
				var src []string
				for _, s := range r.Sources {
					src = append(src, string(s))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Name, descPeer(d.Owner), summary(&d.Descriptor),
					descAge(r.AgeSeconds), d.Seq, strings.Join(src, ","), d.Slot)
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.String("task", "", "task, e.g. digits-classification")
	f.String("skill", "", "model skill, e.g. classify-digits")
	f.String("modality", "", "image, text, tabular, ...")
	f.String("role", "", "compute role (compute, host, mpvu, ...)")
	f.String("name", "", "exact descriptor name")
	f.String("owner", "", "only this peer's descriptors")
	f.Int64("min-samples", 0, "at least this many samples (data, testset)")
	f.String("max-age", "", "data changed within this long, e.g. 24h")
	f.String("source", "both", "gossip, dht or both")
	f.String("timeout", "", "bound on the DHT look-up, e.g. 5s")
	return c
}

func printSigned(cmd *cobra.Command, sd *descriptors.Signed) error {
	if jsonOutput(cmd) {
		return printJSON(cmd, sd)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s %q  seq %d\n", sd.Kind, sd.Name, sd.Seq)
	fmt.Fprintf(w, "  id       %s\n  slot     %s\n  owner    %s\n  issued   %s\n  expires  %s\n",
		sd.ID, sd.Slot, sd.Owner, sd.Issued.Local().Format(time.DateTime), sd.Expires.Local().Format(time.DateTime))
	fmt.Fprintf(w, "  summary  %s\n", summary(&sd.Descriptor))
	fmt.Fprintf(w, "  tags     %s\n", strings.Join(sd.Tags(), " "))
	if len(sd.Sealed) > 0 {
		var f []string
		for k := range sd.Sealed {
			f = append(f, k)
		}
		sort.Strings(f)
		fmt.Fprintf(w, "  sealed   %s\n", strings.Join(f, " "))
	}
	if sd.Data != nil && len(sd.Data.LabelDist) > 0 {
		fmt.Fprintf(w, "  labels   %s\n", labelDist(sd.Data.LabelDist))
	}
	return nil
}

func summary(d *descriptors.Descriptor) string {
	switch {
	case d.Data != nil:
		x := d.Data
		return fmt.Sprintf("%s/%s %s %d samples %s %s", x.Task, x.Modality, x.Format, x.Samples, bytesHuman(x.SizeBytes), x.Policy.Mode)
	case d.Model != nil:
		x := d.Model
		s := fmt.Sprintf("%s v%s skills=%s", x.Architecture, x.Version, strings.Join(x.Skills, ","))
		if x.ClaimedAccuracy > 0 {
			s += fmt.Sprintf(" acc=%.3f", x.ClaimedAccuracy)
		}
		return s
	case d.Compute != nil:
		x := d.Compute
		return fmt.Sprintf("%d cpu %s mem %d gpu roles=%s", x.CPUCores, bytesHuman(x.MemoryBytes), len(x.GPUs), strings.Join(x.Roles, ","))
	case d.Testset != nil:
		x := d.Testset
		return fmt.Sprintf("%s %d samples metrics=%s", x.Task, x.Samples, strings.Join(x.Metrics, ","))
	}
	return ""
}

func labelDist(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func bytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func descAge(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}

func descPeer(p string) string {
	if len(p) > 16 {
		return p[:8] + "…" + p[len(p)-6:]
	}
	return p
}

// attachWeights checks that file is a model package learn can load (so the
// node can serve it), fills the architecture, parameter count and size from
// it, adds it to the running node's transfer store and sets the weights
// root.
func attachWeights(cmd *cobra.Command, file string, m *descriptors.Model) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("--weights %q: %w", file, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("--weights: %w", err)
	}
	if st.Size() > learn.MaxModelBytes {
		return fmt.Errorf("--weights %s: %d bytes, larger than any model daitn can load (%d)", file, st.Size(), learn.MaxModelBytes)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return fmt.Errorf("--weights: %w", err)
	}
	lm, err := learn.Unmarshal(b)
	if err != nil {
		return fmt.Errorf("--weights %s is not a daitn model file (as `daitn train get` writes): %w; for other formats use `daitn add` and --weights-root", file, err)
	}
	switch {
	case m.Architecture == "":
		m.Architecture = lm.Arch.Name
	case m.Architecture != lm.Arch.Name:
		return fmt.Errorf("--arch %q, but %s holds a %s model", m.Architecture, file, lm.Arch.Name)
	}
	if m.Params == 0 {
		m.Params = int64(lm.NumParams())
	}
	if m.SizeBytes == 0 {
		m.SizeBytes = int64(len(b))
	}
	var info struct {
		Root string `json:"root"`
	}
	if err := callNode(cmd, http.MethodPost, "/v1/transfer/add", node.TransferAddRequest{Path: abs}, &info); err != nil {
		return fmt.Errorf("--weights: add %s to the node's store: %w", file, err)
	}
	m.WeightsRoot = info.Root
	return nil
}
