package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/oam"
)

func init() {
	rootCmd.AddCommand(initCmd(), upCmd(), idCmd(), peersCmd(), connectCmd(), statusCmd(), swarmKeyCmd(), versionCmd())
}

func initCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the data directory: identity key and a commented config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := dataDir(cmd)
			if err != nil {
				return err
			}
			created, err := node.Init(d)
			if err != nil {
				return err
			}
			k, err := node.LoadIdentity(d)
			if err != nil {
				return err
			}
			id, _ := peerIDOf(k)
			out := cmd.OutOrStdout()
			if len(created) == 0 {
				fmt.Fprintf(out, "%s already initialised (kept the existing key)\n", d)
			}
			for _, c := range created {
				fmt.Fprintf(out, "created %s\n", c)
			}
			fmt.Fprintf(out, "peer id %s\n", id)
			return nil
		},
	}
}

func upCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the node in the foreground until interrupted",
		Long: `Run the node in the foreground until SIGINT or SIGTERM, then shut down cleanly.
The data directory is initialised first if needed. Flags override config.toml.`,
		Args: cobra.NoArgs,
		RunE: runUp,
	}
	f := cmd.Flags()
	f.StringSlice("listen", nil, "multiaddrs to listen on (repeatable)")
	f.StringArray("bootstrap", nil, "peer to join through, a multiaddr ending in /p2p/<id> (repeatable)")
	f.StringSlice("roles", nil, "roles: data,compute,mpvu,host,client")
	f.Bool("no-mdns", false, "do not look for peers on the local network")
	f.String("api", "", "control API address (loopback only), e.g. 127.0.0.1:5080")
	f.String("swarm-key", "", "pre-shared key file: join a private federation")
	f.String("log-level", "", "debug, info, warn or error")
	f.String("dht-mode", "", "auto-server, auto, server or client")
	f.String("testset", "", "MPVU held-out set: a directory in the MNIST idx format (default: the MNIST t10k test set)")
	f.Bool("local", false, "loopback only: listen on 127.0.0.1 with random ports, no mDNS, no NAT port mapping")
	return cmd
}

// loadConfigForUp reads config.toml and applies the flags of `up`.
func loadConfigForUp(cmd *cobra.Command) (node.Config, error) {
	d, err := dataDir(cmd)
	if err != nil {
		return node.Config{}, err
	}
	if _, err := node.Init(d); err != nil {
		return node.Config{}, err
	}
	cfg, err := node.LoadConfig(d)
	if err != nil {
		return cfg, err
	}
	f := cmd.Flags()
	if v, _ := f.GetBool("local"); v {
		cfg.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
		cfg.Network.MDNS = false
		cfg.Network.NATPortMap = false
		cfg.Network.DHTMode = node.DHTServer
		if !f.Changed("api") {
			cfg.API.Listen = "127.0.0.1:0"
		}
	}
	if f.Changed("listen") {
		cfg.Network.Listen, _ = f.GetStringSlice("listen")
	}
	if f.Changed("bootstrap") {
		cfg.Network.Bootstrap, _ = f.GetStringArray("bootstrap")
	}
	if f.Changed("roles") {
		cfg.Roles, _ = f.GetStringSlice("roles")
	}
	if v, _ := f.GetBool("no-mdns"); v {
		cfg.Network.MDNS = false
	}
	if f.Changed("api") {
		cfg.API.Listen, _ = f.GetString("api")
	}
	if f.Changed("swarm-key") {
		cfg.Network.SwarmKey, _ = f.GetString("swarm-key")
	}
	if f.Changed("log-level") {
		cfg.LogLevel, _ = f.GetString("log-level")
	}
	if f.Changed("dht-mode") {
		cfg.Network.DHTMode, _ = f.GetString("dht-mode")
	}
	if v, _ := f.GetString("testset"); v != "" {
		abs, err := filepath.Abs(v)
		if err != nil {
			return cfg, fmt.Errorf("--testset %q: %w", v, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return cfg, fmt.Errorf("--testset %q: want a directory holding t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz)", v)
		}
		if cfg.Services == nil {
			cfg.Services = map[string]map[string]any{}
		}
		if cfg.Services["train"] == nil {
			cfg.Services["train"] = map[string]any{}
		}
		cfg.Services["train"]["testset"] = abs
	}
	return cfg, cfg.Validate()
}

func runUp(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfigForUp(cmd)
	if err != nil {
		return err
	}
	lvl, _ := node.ParseLogLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	n, err := node.New(startCtx, cfg, node.WithLogger(log))
	cancel()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "daitn node %s is up\n", n.ID())
	for _, a := range n.Multiaddrs() {
		fmt.Fprintf(out, "  listening on %s\n", a)
	}
	if n.APIAddr() != "" {
		fmt.Fprintf(out, "  control API on http://%s (token in %s)\n", n.APIAddr(), filepath.Join(cfg.DataDir, oam.TokenFile))
	}
	fmt.Fprintln(out, "press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(out, "shutting down")
	return n.Close()
}

func idCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Show the running node's peer ID and addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var id node.IDInfo
			if err := callNode(cmd, "GET", "/v1/id", nil, &id); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, id)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintf(tw, "peer id\t%s\n", id.PeerID)
			fmt.Fprintf(tw, "roles\t%s\n", strings.Join(id.Roles, ","))
			fmt.Fprintf(tw, "version\t%s\n", id.Version)
			fmt.Fprintf(tw, "private federation\t%v\n", id.Private)
			for _, a := range id.Addrs {
				fmt.Fprintf(tw, "address\t%s\n", a)
			}
			return tw.Flush()
		},
	}
}

func peersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List connected peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var peers []node.PeerInfo
			if err := callNode(cmd, "GET", "/v1/peers", nil, &peers); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, peers)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "PEER\tADDRESS\tDIR\tRTT\tSTREAMS\tSINCE")
			for _, p := range peers {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fms\t%d\t%s\n", p.PeerID, p.Addr, p.Direction, p.LatencyMS, p.Streams, p.Since)
			}
			return tw.Flush()
		},
	}
}

func connectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "connect MULTIADDR",
		Short: "Connect the running node to a peer",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res map[string]string
			if err := callNode(cmd, "POST", "/v1/connect", node.ConnectRequest{Addr: args[0]}, &res); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "connected to %s\n", res["peer_id"])
			return nil
		},
	}
}

func statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running node's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st node.Status
			if err := callNode(cmd, "GET", "/v1/status", nil, &st); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, st)
			}
			tw := newTable(cmd.OutOrStdout())
			rows := [][2]string{
				{"peer id", st.PeerID},
				{"version", st.Version},
				{"uptime", st.Uptime},
				{"roles", strings.Join(st.Roles, ",")},
				{"peers", fmt.Sprint(st.Peers)},
				{"dht", fmt.Sprintf("%s, %d peers in routing table", st.DHTMode, st.DHTTable)},
				{"reachability", st.Reachability},
				{"private federation", fmt.Sprint(st.Private)},
				{"topics", strings.Join(st.Topics, " ")},
				{"services", strings.Join(st.Services, " ")},
				{"bandwidth", fmt.Sprintf("%d bytes in, %d bytes out", st.BandwidthIn, st.BandwidthOut)},
				{"data dir", st.DataDir},
			}
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
			}
			return tw.Flush()
		},
	}
}

func swarmKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "swarm-key FILE",
		Short: "Write a new pre-shared key for a private federation",
		Long: `Write a new random libp2p pre-shared key to FILE (mode 0600). Give the same
file to every member with --swarm-key FILE (or network.swarm_key in config.toml);
nodes without it cannot connect to them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err == nil {
				return fmt.Errorf("swarm key %s already exists; not overwriting it", args[0])
			}
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return err
			}
			body := "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(k) + "\n"
			if err := oam.WriteFileAtomic(args[0], []byte(body), 0o600); err != nil {
				return fmt.Errorf("write swarm key: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; share it only with members of the federation\n", args[0])
			return nil
		},
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the daitn version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "daitn", node.Version)
		},
	}
}
