package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/overlay"
	"github.com/daitn/daitn/routing"
)

func init() { rootCmd.AddCommand(mapCmd()) }

func mapCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Show the live map of the network this node has built",
		Long: `Print this node's map of the network (the draft's DRRT/QRRT): the peers it hears
beacons from with their roles, load, free slots, reachability, round-trip time and
age; the datasets, models, compute offers and test sets it knows; with --dot the
whole graph (hosts, RTT, overlap and complement edges) for Graphviz:

  daitn map
  daitn map --task digits-classification --labels 0-9     (the view for one job)
  daitn map --skill classify-digits                        (the view for one skill)
  daitn map --dot | dot -Tsvg > map.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			for _, f := range []string{"task", "skill", "labels", "max-age"} {
				if v, _ := cmd.Flags().GetString(f); v != "" {
					q.Set(strings.ReplaceAll(f, "-", "_"), v)
				}
			}
			if v, _ := cmd.Flags().GetBool("compute"); v {
				q.Set("compute", "1")
			}
			dot, _ := cmd.Flags().GetBool("dot")
			if !dot && !jsonOutput(cmd) {
				q.Set("edges", "0")
			}
			var doc overlay.Document
			if err := c.Call(cmd.Context(), http.MethodGet, "/v1/map?"+q.Encode(), nil, &doc); err != nil {
				return err
			}
			switch {
			case jsonOutput(cmd):
				return printJSON(cmd, doc)
			case dot:
				return writeDot(cmd.OutOrStdout(), doc)
			}
			return printMap(cmd.OutOrStdout(), doc)
		},
	}
	f := cmd.Flags()
	f.Bool("dot", false, "print the graph in Graphviz dot format")
	f.String("task", "", "show only what matters for a training job of this task")
	f.String("skill", "", "show only models serving this skill and their hosts")
	f.String("labels", "", "with --task: only datasets holding some of these labels (e.g. 0-9)")
	f.String("max-age", "", "with --task: only data whose newest sample is younger (e.g. 24h)")
	f.Bool("compute", false, "with --task: include compute offers and compute peers")
	cmd.AddCommand(mapGroupsCmd(), mapEventsCmd(), mapPlanCmd(), mapQueryCmd())
	return cmd
}

func shortID(s string) string {
	if len(s) > 14 {
		return s[:4] + "…" + s[len(s)-8:]
	}
	return s
}

func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func printMap(w io.Writer, doc overlay.Document) error {
	fmt.Fprintf(w, "map of %s (version %d, %d peers, %d items)\n\n", shortID(doc.Self), doc.Version, len(doc.Peers), len(doc.Items))
	tw := newTable(w)
	fmt.Fprintln(tw, "PEER\tROLES\tCPU\tQUEUE\tJOBS\tFREE\tREACH\tRTT\tAGE\tDESCRIPTORS")
	peers := append([]overlay.PeerEntry(nil), doc.Peers...)
	sort.SliceStable(peers, func(i, j int) bool {
		if peers[i].Self != peers[j].Self {
			return peers[i].Self
		}
		return peers[i].RTT != 0 && (peers[j].RTT == 0 || peers[i].RTT < peers[j].RTT)
	})
	for _, p := range peers {
		id := shortID(p.ID.String())
		rtt := "-"
		if p.Self {
			id += " (self)"
		} else if p.RTT > 0 {
			rtt = p.RTT.Round(10 * time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d%%\t%d\t%d\t%d\t%s\t%s\t%s\t%d\n", id, overlay.RolesString(p.Roles), p.Load.CPU,
			p.Load.Queue, p.Load.Jobs, p.Free.Slots, p.Reach, rtt, age(p.Age), p.DescriptorCount)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	byKind := map[overlay.Kind][]overlay.ItemEntry{}
	for _, it := range doc.Items {
		byKind[it.Kind] = append(byKind[it.Kind], it)
	}
	reach := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	if l := byKind[overlay.KindData]; len(l) > 0 {
		fmt.Fprintln(w, "\nDATASETS")
		tw = newTable(w)
		fmt.Fprintln(tw, "ID\tNAME\tOWNER\tTASK\tSAMPLES\tLABELS\tPOLICY\tAGE\tREACHABLE")
		for _, it := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", shortID(it.ID), it.Name, shortID(it.Owner.String()), it.Task,
				it.Samples, labelSummary(it.Item), it.Policy, age(it.Age), reach(it.Reachable))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if l := byKind[overlay.KindModel]; len(l) > 0 {
		fmt.Fprintln(w, "\nMODELS")
		tw = newTable(w)
		fmt.Fprintln(tw, "ID\tNAME\tHOST\tSKILLS\tARCH\tACCURACY\tLATENCY\tPRICE\tREACHABLE")
		for _, it := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%.1fms\t%g\t%s\n", shortID(it.ID), it.Name, shortID(it.Owner.String()),
				strings.Join(it.Skills, ","), it.Arch, it.Accuracy, it.LatencyMs, it.Price, reach(it.Reachable))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if l := byKind[overlay.KindCompute]; len(l) > 0 {
		fmt.Fprintln(w, "\nCOMPUTE")
		tw = newTable(w)
		fmt.Fprintln(tw, "ID\tNAME\tOWNER\tCORES\tMEMORY\tGPUS\tROLES\tREACHABLE")
		for _, it := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%dMiB\t%d\t%s\t%s\n", shortID(it.ID), it.Name, shortID(it.Owner.String()),
				it.Cores, it.MemoryMB, it.GPUs, strings.Join(it.Roles, ","), reach(it.Reachable))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if l := byKind[overlay.KindTestset]; len(l) > 0 {
		fmt.Fprintln(w, "\nTEST SETS")
		tw = newTable(w)
		fmt.Fprintln(tw, "ID\tNAME\tOWNER\tTASK\tSAMPLES\tLABELS\tAGE\tREACHABLE")
		for _, it := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", shortID(it.ID), it.Name, shortID(it.Owner.String()), it.Task,
				it.Samples, labelSummary(it.Item), age(it.Age), reach(it.Reachable))
		}
		return tw.Flush()
	}
	return nil
}

func labelSummary(it *overlay.Item) string {
	l := it.Labels()
	if len(l) > 10 {
		return fmt.Sprintf("%s … (%d)", strings.Join(l[:10], ","), len(l))
	}
	return strings.Join(l, ",")
}

// dotQuote quotes an ID or label for dot, keeping the \n line breaks the
// labels use.
func dotQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func writeDot(w io.Writer, doc overlay.Document) error {
	var b strings.Builder
	b.WriteString("graph daitn_map {\n  rankdir=LR;\n  node [fontsize=10];\n")
	for _, p := range doc.Peers {
		label := shortID(p.ID.String()) + `\n` + overlay.RolesString(p.Roles) + fmt.Sprintf(`\ncpu %d%% free %d`, p.Load.CPU, p.Free.Slots)
		style := ""
		if p.Self {
			style = ", style=bold"
		}
		fmt.Fprintf(&b, "  %s [shape=box, label=%s%s];\n", dotQuote(p.ID.String()), dotQuote(label), style)
	}
	colors := map[overlay.Kind]string{overlay.KindData: "lightblue", overlay.KindModel: "palegreen",
		overlay.KindCompute: "khaki", overlay.KindTestset: "plum"}
	skills := map[string]bool{}
	for _, it := range doc.Items {
		name := it.Name
		if name == "" {
			name = shortID(it.ID)
		}
		label := fmt.Sprintf(`%s\n%s`, name, it.Kind)
		if it.Samples > 0 {
			label += fmt.Sprintf(`\n%d samples`, it.Samples)
		}
		fmt.Fprintf(&b, "  %s [shape=ellipse, style=filled, fillcolor=%s, label=%s];\n", dotQuote(it.ID), colors[it.Kind], dotQuote(label))
		for _, s := range it.Skills {
			skills[s] = true
		}
	}
	for s := range skills {
		fmt.Fprintf(&b, "  %s [shape=diamond, label=%s];\n", dotQuote("skill:"+s), dotQuote(s))
	}
	for _, e := range doc.Edges {
		attr := ""
		switch e.Kind {
		case overlay.EdgeRTT:
			attr = fmt.Sprintf(`label="%.1fms", style=dashed, color=gray`, e.Weight)
		case overlay.EdgeOverlaps:
			attr = fmt.Sprintf(`label="J=%.2f", color=red`, e.Weight)
		case overlay.EdgeComplements:
			attr = fmt.Sprintf(`label="compl %.2f", color=darkgreen, style=dotted`, e.Weight)
		case overlay.EdgeServesSkill:
			attr = "color=darkgreen"
		}
		fmt.Fprintf(&b, "  %s -- %s [%s];\n", dotQuote(e.From), dotQuote(e.To), attr)
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func mapGroupsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Find groups of datasets that together meet a job's data needs, least overlap first",
		Long: `Ask the map's relationship maps for groups of reachable datasets that together
cover the labels and hold the samples a job needs, ranked by least estimated
overlap (MinHash content sketches), then fewer datasets, then freshness:

  daitn map groups --task digits-classification --labels 0-9 --min-samples 5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			task, _ := cmd.Flags().GetString("task")
			if task == "" {
				return fmt.Errorf("--task is required, e.g. --task digits-classification")
			}
			q := url.Values{"task": {task}}
			for _, f := range []string{"labels", "max-age"} {
				if v, _ := cmd.Flags().GetString(f); v != "" {
					q.Set(strings.ReplaceAll(f, "-", "_"), v)
				}
			}
			if v, _ := cmd.Flags().GetInt64("min-samples"); v != 0 {
				q.Set("min_samples", strconv.FormatInt(v, 10))
			}
			if v, _ := cmd.Flags().GetInt("limit"); v != 0 {
				q.Set("limit", strconv.Itoa(v))
			}
			if v, _ := cmd.Flags().GetStringSlice("exclude"); len(v) > 0 {
				q.Set("exclude", strings.Join(v, ","))
			}
			var groups []overlay.Group
			if err := callNode(cmd, http.MethodGet, "/v1/map/groups?"+q.Encode(), nil, &groups); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, groups)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "RANK\tDATASETS\tOWNERS\tSAMPLES\tOVERLAP\tUNIQUE\tLABELS\tOLDEST\tSEARCH")
			for i, g := range groups {
				var ds, ow []string
				for _, d := range g.Datasets {
					ds = append(ds, shortID(d))
				}
				for _, o := range g.Owners {
					ow = append(ow, shortID(o))
				}
				search := "greedy+swaps"
				if g.Exact {
					search = "exact"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%.0f\t%.0f\t%s\t%s\t%s\n", i+1, strings.Join(ds, ","), strings.Join(ow, ","),
					g.Samples, g.Overlap, g.Unique, strings.Join(g.Labels, ","), age(g.MaxAge), search)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.String("task", "", "task the datasets must serve (required)")
	f.String("labels", "", "labels the group must cover, e.g. 0-9 or cat,dog")
	f.Int64("min-samples", 0, "unique samples the group must hold together (overlap removed)")
	f.String("max-age", "", "skip datasets whose newest sample is older, e.g. 24h")
	f.Int("limit", 5, "how many groups to print")
	f.StringSlice("exclude", nil, "peer IDs whose datasets must not be used")
	return cmd
}

func mapEventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Follow changes of the map (peers joining and leaving, items added and removed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			return c.Stream(cmd.Context(), "/v1/map/events", func(ev oam.Event) error {
				if jsonOutput(cmd) {
					return printJSON(cmd, ev)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", ev.Type, ev.Data)
				return nil
			})
		},
	}
}

func mapPlanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Dry-run the training planners (T-FAM, MTRCE, TAG) on the current map",
		Long: `Check whether a training job is feasible on this node's map right now and, if it
is, which datasets it would train on and where (on the data's node or a compute
node near it), with the FedAvg settings it would use. Nothing is started.

  daitn map plan --task digits-classification --labels 0-9 --min-samples 5000 --shards 10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			var job routing.JobSpec
			job.Task, _ = f.GetString("task")
			labels, _ := f.GetString("labels")
			var err error
			if job.Labels, err = overlay.ParseLabels(labels); err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			job.MinSamples, _ = f.GetInt64("min-samples")
			job.Shards, _ = f.GetInt("shards")
			job.ClientsPerRound, _ = f.GetInt("clients-per-round")
			job.TargetAccuracy, _ = f.GetFloat64("target-accuracy")
			p, _ := f.GetString("placement")
			job.Placement = routing.Placement(p)
			if v, _ := f.GetString("max-age"); v != "" {
				if job.MaxAge, err = time.ParseDuration(v); err != nil {
					return fmt.Errorf("--max-age %q: want a duration like 24h", v)
				}
			}
			ex, _ := f.GetStringSlice("exclude")
			for _, s := range ex {
				id, err := peer.Decode(s)
				if err != nil {
					return fmt.Errorf("--exclude %q: not a peer ID", s)
				}
				job.Exclude = append(job.Exclude, id)
			}
			if err := job.Validate(); err != nil {
				return err
			}
			var resp node.MapPlanResponse
			if err := callNode(cmd, http.MethodPost, "/v1/map/plan/train", node.MapPlanRequest{Job: job}, &resp); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, resp)
			}
			w := cmd.OutOrStdout()
			if !resp.Admission.Admit {
				fmt.Fprintln(w, "T-FAM: rejected")
				for _, r := range resp.Admission.Reasons {
					fmt.Fprintln(w, "  -", r)
				}
				return &exitError{code: 2, err: fmt.Errorf("job is not feasible on the current map")}
			}
			fmt.Fprintf(w, "T-FAM: admitted (%d usable datasets)\n", len(resp.Admission.Eligible))
			for _, r := range resp.Admission.Warnings {
				fmt.Fprintln(w, "  warning:", r)
			}
			fmt.Fprintf(w, "MTRCE: %d datasets, %d samples (core: %s)\n", len(resp.Plan.Assignments), resp.Plan.Samples, strings.Join(resp.Plan.Core, ","))
			tw := newTable(w)
			fmt.Fprintln(tw, "DATASET\tOWNER\tTRAIN ON\tMODE\tSAMPLES\tAGE\tWHY")
			for _, a := range resp.Plan.Assignments {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", shortID(a.Dataset), shortID(a.Owner.String()), shortID(a.TrainOn.String()),
					a.Mode, a.Samples, age(a.Age), a.Why)
			}
			_ = tw.Flush()
			for _, s := range resp.Plan.Skipped {
				fmt.Fprintf(w, "  skipped %s: %s\n", shortID(s.Dataset), s.Reason)
			}
			if s := resp.Settings; s != nil {
				fmt.Fprintf(w, "TAG: %s C=%g E=%d B=%d lr=%g rounds=%d clients/round=%d\n", s.Algorithm, s.C, s.E, s.B, s.LR, s.Rounds, s.ClientsPerRound)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("task", "", "task to train (required)")
	f.String("labels", "", "labels the data must cover, e.g. 0-9")
	f.Int64("min-samples", 0, "unique samples needed")
	f.Int("shards", 0, "distinct datasets that must be reachable")
	f.Int("clients-per-round", 0, "datasets trained per round (default: C=0.1 of the plan)")
	f.Float64("target-accuracy", 0, "target accuracy (needs a reachable tester)")
	f.String("placement", "", "data | near | compute (default near)")
	f.String("max-age", "", "skip data older than this, e.g. 24h")
	f.StringSlice("exclude", nil, "peer IDs not to use")
	return cmd
}

func mapQueryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Dry-run the inference planners (Q-FAM, Q-IRCE): which host would answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			var q routing.QuerySpec
			q.Skill, _ = f.GetString("skill")
			q.MinAccuracy, _ = f.GetFloat64("min-accuracy")
			q.MaxPrice, _ = f.GetFloat64("max-price")
			q.AnyPrice, _ = f.GetBool("any-price")
			if v, _ := f.GetString("max-latency"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					return fmt.Errorf("--max-latency %q: want a duration like 200ms", v)
				}
				q.MaxLatency = d
			}
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			var resp node.MapQueryResponse
			if err := c.Call(cmd.Context(), http.MethodPost, "/v1/map/plan/query", q, &resp); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, resp)
			}
			w := cmd.OutOrStdout()
			if !resp.Admission.Admit {
				fmt.Fprintln(w, "Q-FAM: rejected")
				for _, r := range resp.Admission.Reasons {
					fmt.Fprintln(w, "  -", r)
				}
				return &exitError{code: 2, err: fmt.Errorf("query cannot be served on the current map")}
			}
			tw := newTable(w)
			fmt.Fprintln(tw, "RANK\tMODEL\tHOST\tSCORE\tEXPECTED\tRTT\tCPU\tQUEUE\tACCURACY\tPRICE")
			for i, c := range resp.Candidates {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%.3f\t%s\t%s\t%d%%\t%d\t%.3f\t%g\n", i+1, shortID(c.Model), shortID(c.Host.String()),
					c.Score, c.Expected.Round(time.Microsecond), c.RTT.Round(time.Microsecond), c.CPU, c.Queue, c.Accuracy, c.Price)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.String("skill", "", "skill to ask for (required), e.g. classify-digits")
	f.String("max-latency", "", "longest acceptable answer time, e.g. 200ms")
	f.Float64("min-accuracy", 0, "least acceptable accuracy (0..1)")
	f.Float64("max-price", 0, "most acceptable price per query")
	f.Bool("any-price", false, "accept any price")
	return cmd
}
