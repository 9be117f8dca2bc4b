// Package nodetest starts whole daitn nodes on 127.0.0.1 for tests: random
// ports, a temporary data directory each, no mDNS and no NAT port mapping (no
// traffic leaves loopback), DHT in server mode, and every node bootstrapped
// off node 0. Nodes are closed by t.Cleanup; Kill and Restart simulate
// crashes and restarts on the same data directory.
package nodetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/daitn/daitn/node"
)

type config struct {
	mutate   func(i int, c *node.Config)
	nodeOpts []node.Option
	noSvcs   bool
	quic     bool
}

// Option changes how Start builds nodes.
type Option func(*config)

// WithConfig edits node i's config before it starts.
func WithConfig(f func(i int, c *node.Config)) Option { return func(c *config) { c.mutate = f } }

// WithNodeOptions passes options to every node.New.
func WithNodeOptions(opts ...node.Option) Option {
	return func(c *config) { c.nodeOpts = append(c.nodeOpts, opts...) }
}

// WithoutServices starts only the networking core of each node.
func WithoutServices() Option { return func(c *config) { c.noSvcs = true } }

// WithQUIC listens on QUIC as well as TCP.
func WithQUIC() Option { return func(c *config) { c.quic = true } }

// Config returns a loopback-only test configuration for dataDir.
func Config(dataDir string) node.Config {
	c := node.DefaultConfig(dataDir)
	c.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	c.Network.MDNS = false
	c.Network.NATPortMap = false
	c.Network.Relay = false
	c.Network.DHTMode = node.DHTServer
	c.Network.ReconnectEvery = node.Duration{Duration: time.Second}
	c.API.Listen = "127.0.0.1:0"
	c.LogLevel = "warn"
	return c
}

// Logger is quiet unless DAITN_TEST_LOG is set (to debug, info, warn, error).
func Logger(name string) *slog.Logger {
	lvl := os.Getenv("DAITN_TEST_LOG")
	if lvl == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l, err := node.ParseLogLevel(lvl)
	if err != nil {
		l = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("node", name)
}

// Node is a started test node plus what is needed to restart it.
type Node struct {
	*node.Node
	Cfg  node.Config
	opts []node.Option
	t    testing.TB
}

// Start starts n nodes; node 0 first, then every other with node 0 as its
// bootstrap peer. It returns once every node is connected to node 0.
func Start(t testing.TB, n int, opts ...Option) []*Node {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	var out []*Node
	var boot string
	booted := map[int]bool{}
	for i := 0; i < n; i++ {
		cfg := Config(t.TempDir())
		if c.quic {
			cfg.Network.Listen = append(cfg.Network.Listen, "/ip4/127.0.0.1/udp/0/quic-v1")
		}
		if i > 0 {
			cfg.Network.Bootstrap = []string{boot}
		}
		if c.mutate != nil {
			c.mutate(i, &cfg)
		}
		nopts := append([]node.Option{node.WithLogger(Logger(fmt.Sprint(i)))}, c.nodeOpts...)
		if c.noSvcs {
			nopts = append(nopts, node.WithoutServices())
		}
		booted[i] = i > 0 && len(cfg.Network.Bootstrap) > 0 && cfg.Network.Bootstrap[0] == boot
		nd := startOne(t, cfg, nopts)
		if i == 0 {
			boot = TCPAddr(nd.Node)
		}
		out = append(out, nd)
	}
	for i := 1; i < len(out); i++ {
		if !booted[i] {
			continue
		}
		Eventually(t, 20*time.Second, fmt.Sprintf("node %d connected to node 0", i), func() bool {
			return len(out[i].Host().Network().ConnsToPeer(out[0].ID())) > 0
		})
	}
	return out
}

func startOne(t testing.TB, cfg node.Config, opts []node.Option) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd, err := node.New(ctx, cfg, opts...)
	if err != nil {
		t.Fatalf("nodetest: start node in %s: %v", cfg.DataDir, err)
	}
	tn := &Node{Node: nd, Cfg: cfg, opts: opts, t: t}
	t.Cleanup(func() { _ = nd.Close() })
	return tn
}

// Restart closes the node (if still running) and starts a new one on the
// same data directory and configuration.
func (n *Node) Restart() *Node {
	n.t.Helper()
	_ = n.Node.Close()
	return startOne(n.t, n.Cfg, n.opts)
}

// Kill closes the node abruptly from the network's point of view: its host
// goes away without goodbyes. (In-process we cannot SIGKILL ourselves; the
// store's fsync'd writes make Close and a crash equivalent for what was
// acknowledged.)
func (n *Node) Kill() { _ = n.Node.Close() }

// TCPAddr returns nd's loopback TCP multiaddr with /p2p/<id>.
func TCPAddr(nd *node.Node) string {
	for _, a := range nd.Multiaddrs() {
		if strings.Contains(a, "/tcp/") && strings.HasPrefix(a, "/ip4/127.0.0.1/") {
			return a
		}
	}
	return nd.Multiaddrs()[0]
}

// Eventually polls cond every 25ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
