package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/transfer"
)

func init() {
	rootCmd.AddCommand(addCmd(), getCmd(), pinCmd(), unpinCmd(), gcCmd(), transferCmd())
}

func addCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add FILE|DIR",
		Short: "Store a file or directory in the node's chunk store and print its root CID",
		Long: `Split FILE (or every file under DIR) into content-defined chunks, store them in
the running node's chunk store, pin the result and print its root CID. Other peers
fetch it with ` + "`daitn get CID`" + `. With --private the root is served only to the
listed peers (and not announced in the DHT).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			p, err := filepath.Abs(args[0])
			if err != nil {
				return fmt.Errorf("path %q: %w", args[0], err)
			}
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("add %s: %w", args[0], err)
			}
			req := node.TransferAddRequest{Path: p}
			if cmd.Flags().Changed("private") {
				req.Private, _ = cmd.Flags().GetStringSlice("private")
				if req.Private == nil {
					req.Private = []string{}
				}
			}
			var in transfer.Info
			if err := c.Call(cmd.Context(), http.MethodPost, "/v1/transfer/add", req, &in); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, in)
			}
			if q, _ := cmd.Flags().GetBool("quiet"); q {
				fmt.Fprintln(cmd.OutOrStdout(), in.Root)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s, %s, %d blocks)\n%s\n", args[0], in.Type, humanBytes(float64(in.Size)), in.Blocks, in.Root)
			return nil
		},
	}
	cmd.Flags().StringSlice("private", nil, "serve only to these peer IDs (repeatable; empty value = nobody else)")
	cmd.Flags().BoolP("quiet", "q", false, "print only the root CID")
	return cmd
}

func getCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get CID",
		Short: "Fetch CID from whoever has it and write it to -o PATH",
		Long: `Fetch the file or directory with root CID from the peers that have it (found
through the DHT and by asking connected peers), verify every chunk, store it in the
node's chunk store and write it to PATH. An interrupted get resumes from the chunks
already stored. Shows a progress bar on a terminal and plain lines otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: runGet,
	}
	cmd.Flags().StringP("output", "o", "", "where to write the file or directory (default: only store it)")
	cmd.Flags().StringSlice("provider", nil, "peer ID or /p2p multiaddr to ask first (repeatable)")
	cmd.Flags().Bool("no-pin", false, "do not pin: the next gc may remove it")
	return cmd
}

func runGet(cmd *cobra.Command, args []string) error {
	c, err := apiFromCmd(cmd)
	if err != nil {
		return err
	}
	req := node.TransferGetRequest{CID: args[0], Stream: true}
	if o, _ := cmd.Flags().GetString("output"); o != "" {
		if req.Out, err = filepath.Abs(o); err != nil {
			return fmt.Errorf("output %q: %w", o, err)
		}
	}
	req.Providers, _ = cmd.Flags().GetStringSlice("provider")
	req.NoPin, _ = cmd.Flags().GetBool("no-pin")
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	body, _ := json.Marshal(req)
	resp, err := c.Do(ctx, http.MethodPost, "/v1/transfer/get", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	errw := cmd.ErrOrStderr()
	tty := false
	if f, ok := errw.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	bar := &progressBar{w: errw, tty: tty, quiet: jsonOutput(cmd)}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l node.TransferGetLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decode progress from node: %w", err)
		}
		switch l.Type {
		case "progress":
			if l.Progress != nil {
				bar.update(*l.Progress)
			}
		case "error":
			bar.finish()
			return fmt.Errorf("get %s: %s", args[0], l.Error)
		case "done":
			bar.finish()
			if jsonOutput(cmd) {
				return printJSON(cmd, l.Result)
			}
			r := l.Result
			serving := 0
			for _, p := range r.Peers {
				if p.Blocks > 0 {
					serving++
				}
			}
			rate := float64(r.FetchedBytes) / r.Elapsed.Seconds()
			fmt.Fprintf(cmd.OutOrStdout(), "fetched %s: %s, %d blocks (%d already here), %s over the network from %d peers in %s (%s/s)\n",
				args[0], humanBytes(float64(r.Size)), r.Blocks, r.Reused, humanBytes(float64(r.FetchedBytes)), serving,
				r.Elapsed.Round(time.Millisecond), humanBytes(rate))
			if req.Out != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "saved to %s\n", req.Out)
			}
			return nil
		}
	}
	bar.finish()
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		if ctx.Err() != nil {
			return fmt.Errorf("get %s interrupted; run it again to resume from the chunks already stored", args[0])
		}
		return fmt.Errorf("get %s: %w", args[0], err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("get %s interrupted; run it again to resume from the chunks already stored", args[0])
	}
	return fmt.Errorf("get %s: the node closed the connection before finishing", args[0])
}

// progressBar draws one rewritten line on a terminal, or a plain line at
// most every 2s otherwise (logs and CI).
type progressBar struct {
	w          io.Writer
	tty, quiet bool
	last       time.Time
	drawn      bool
	rate       float64
	prevBytes  int64
	prevT      time.Duration
}

func (b *progressBar) update(p transfer.Progress) {
	if b.quiet {
		return
	}
	dt := (p.Elapsed - b.prevT).Seconds()
	if dt > 0.05 {
		inst := float64(p.FetchedBytes-b.prevBytes) / dt
		if b.rate == 0 {
			b.rate = inst
		} else {
			b.rate = 0.7*b.rate + 0.3*inst
		}
		b.prevBytes, b.prevT = p.FetchedBytes, p.Elapsed
	}
	if !b.tty && time.Since(b.last) < 2*time.Second && !p.Done {
		return
	}
	b.last = time.Now()
	if p.TotalBytes < 0 {
		msg := fmt.Sprintf("looking for peers that have it (%s)", p.Elapsed.Round(time.Second))
		if b.tty {
			fmt.Fprintf(b.w, "\r%s\x1b[K", msg)
			b.drawn = true
		} else {
			fmt.Fprintln(b.w, msg)
		}
		return
	}
	pct, eta := 0.0, "?"
	total := "?"
	if p.TotalBytes > 0 {
		pct = 100 * float64(p.DoneBytes) / float64(p.TotalBytes)
		total = humanBytes(float64(p.TotalBytes))
		if b.rate > 0 {
			eta = (time.Duration(float64(p.TotalBytes-p.DoneBytes)/b.rate) * time.Second / time.Second).Round(time.Second).String()
		}
	}
	if b.tty {
		const width = 30
		fill := int(pct / 100 * width)
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		fmt.Fprintf(b.w, "\r[%s] %5.1f%% %s/%s %s/s ETA %s peers %d\x1b[K", bar, pct, humanBytes(float64(p.DoneBytes)), total, humanBytes(b.rate), eta, p.Peers)
		b.drawn = true
		return
	}
	fmt.Fprintf(b.w, "progress %.1f%% %s of %s, %s/s, eta %s, %d peers serving\n", pct, humanBytes(float64(p.DoneBytes)), total, humanBytes(b.rate), eta, p.Peers)
}

func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func cidCmd(use, short, path string, print func(cmd *cobra.Command, out map[string]any) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " CID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out map[string]any
			if err := callNode(cmd, http.MethodPost, path, node.TransferCIDRequest{CID: args[0]}, &out); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, out)
			}
			return print(cmd, out)
		},
	}
}

func pinCmd() *cobra.Command {
	return cidCmd("pin", "Keep CID and everything below it through gc", "/v1/transfer/pin", func(cmd *cobra.Command, _ map[string]any) error {
		fmt.Fprintf(cmd.OutOrStdout(), "pinned %s\n", cmd.Flags().Arg(0))
		return nil
	})
}

func unpinCmd() *cobra.Command {
	return cidCmd("unpin", "Let gc reclaim CID's chunks (those no other pin uses)", "/v1/transfer/unpin", func(cmd *cobra.Command, _ map[string]any) error {
		fmt.Fprintf(cmd.OutOrStdout(), "unpinned %s (run `daitn gc` to free the space)\n", cmd.Flags().Arg(0))
		return nil
	})
}

func gcCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove every chunk not reachable from a pinned root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res transfer.GCResult
			if err := callNode(cmd, http.MethodPost, "/v1/transfer/gc", nil, &res); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d blocks (%s), kept %d; %s of disk returned\n",
				res.Removed, humanBytes(float64(res.FreedBytes)), res.Kept, humanBytes(float64(res.ReclaimedBytes)))
			return nil
		},
	}
}

func transferCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transfer",
		Short: "Inspect the chunk store: stat, pins, policy",
	}
	stat := &cobra.Command{
		Use:   "stat [CID]",
		Short: "Show chunk store counters, or one root's details",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var in transfer.Info
				if err := c.Call(cmd.Context(), http.MethodGet, "/v1/transfer/stat/"+args[0], nil, &in); err != nil {
					return err
				}
				if jsonOutput(cmd) {
					return printJSON(cmd, in)
				}
				tw := newTable(cmd.OutOrStdout())
				fmt.Fprintf(tw, "root\t%s\ntype\t%s\nsize\t%s\nblocks\t%d\ncomplete\t%v\npinned\t%v\nprivate\t%v\n",
					in.Root, in.Type, humanBytes(float64(in.Size)), in.Blocks, in.Complete, in.Pinned, in.Private)
				for _, a := range in.Allow {
					fmt.Fprintf(tw, "allow\t%s\n", a)
				}
				return tw.Flush()
			}
			var st transfer.Stats
			if err := c.Call(cmd.Context(), http.MethodGet, "/v1/transfer/stat", nil, &st); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, st)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintf(tw, "blocks\t%d\nstored\t%s (%s on disk)\npins\t%d\nserved\t%d blocks, %s\nfetched\t%d blocks, %s\nrefused\t%d\nbad blocks received\t%d\n",
				st.Blocks, humanBytes(float64(st.Bytes)), humanBytes(float64(st.DiskBytes)), st.Pins, st.ServedBlocks, humanBytes(float64(st.ServedBytes)),
				st.FetchedBlocks, humanBytes(float64(st.FetchedBytes)), st.Refused, st.BadBlocks)
			return tw.Flush()
		},
	}
	pins := listCmd("pins", "List pinned roots", "/v1/transfer/pins",
		"ROOT\tTYPE\tSIZE\tCOMPLETE\tPRIVATE",
		func(in transfer.Info) string {
			return fmt.Sprintf("%s\t%s\t%s\t%v\t%v", in.Root, in.Type, humanBytes(float64(in.Size)), in.Complete, in.Private)
		})
	policy := &cobra.Command{
		Use:   "policy CID [--allow PEER]... | --public",
		Short: "Make a root private to the listed peers, or public again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			req := node.TransferCIDRequest{CID: args[0]}
			req.Allow, _ = cmd.Flags().GetStringSlice("allow")
			req.Public, _ = cmd.Flags().GetBool("public")
			if req.Public && len(req.Allow) > 0 {
				return errors.New("--public and --allow contradict each other: give one")
			}
			var in transfer.Info
			if err := c.Call(cmd.Context(), http.MethodPost, "/v1/transfer/policy", req, &in); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, in)
			}
			if in.Private {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is private; allowed: %d peers\n", in.Root, len(in.Allow))
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is public\n", in.Root)
			}
			return nil
		},
	}
	policy.Flags().StringSlice("allow", nil, "peer ID allowed to fetch (repeatable)")
	policy.Flags().Bool("public", false, "remove the policy: serve to everyone")
	cmd.AddCommand(stat, pins, policy)
	return cmd
}
