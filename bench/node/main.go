// Command node measures the node core: start time (cold and warm), the idle
// RSS and CPU of one running node, and how long 50 in-process nodes take to
// form a network in which every DHT lookup succeeds.
//
//	go run ./bench/node            # all three
//	go run ./bench/node -nodes 50 -idle 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"

	"github.com/daitn/daitn/node"
)

var (
	nodes   = flag.Int("nodes", 50, "nodes in the formation test")
	idle    = flag.Duration("idle", 30*time.Second, "idle window for RSS/CPU")
	starts  = flag.Int("starts", 10, "start-time samples")
	child   = flag.String("child", "", "internal: run one node on this data dir until killed")
	timeout = flag.Duration("timeout", 5*time.Minute, "give up on formation after this long")
)

type okValidator struct{}

func (okValidator) Validate(string, []byte) error        { return nil }
func (okValidator) Select(string, [][]byte) (int, error) { return 0, nil }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func cfgFor(dir string) node.Config {
	c := node.DefaultConfig(dir)
	c.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	c.Network.MDNS = false
	c.Network.NATPortMap = false
	c.Network.Relay = false
	c.Network.DHTMode = node.DHTServer
	c.API.Listen = "127.0.0.1:0"
	c.LogLevel = "error"
	return c
}

func main() {
	flag.Parse()
	if *child != "" {
		runChild(*child)
		return
	}
	fmt.Printf("daitn node benchmarks (%s)\n\n", time.Now().UTC().Format(time.RFC3339))
	startTimes()
	idleCost()
	formation()
}

func startTimes() {
	var cold, warm []time.Duration
	for i := 0; i < *starts; i++ {
		dir, _ := os.MkdirTemp("", "daitn-bench")
		t0 := time.Now()
		n, err := node.New(context.Background(), cfgFor(dir), node.WithLogger(quiet()))
		if err != nil {
			fail(err)
		}
		cold = append(cold, time.Since(t0))
		n.Close()
		t0 = time.Now()
		n, err = node.New(context.Background(), cfgFor(dir), node.WithLogger(quiet()))
		if err != nil {
			fail(err)
		}
		warm = append(warm, time.Since(t0))
		n.Close()
		os.RemoveAll(dir)
	}
	fmt.Printf("start time, %d samples (node.New until the API answers)\n", *starts)
	fmt.Printf("  cold (new identity, new store): p50 %v  max %v\n", pct(cold, 50), pct(cold, 100))
	fmt.Printf("  warm (existing data directory): p50 %v  max %v\n\n", pct(warm, 50), pct(warm, 100))
}

func runChild(dir string) {
	n, err := node.New(context.Background(), cfgFor(dir), node.WithLogger(quiet()))
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
	n.Close()
}

// idleCost runs one node in a child process (so the numbers are its own),
// waits for it to settle, then samples RSS and CPU time over the window.
func idleCost() {
	dir, _ := os.MkdirTemp("", "daitn-bench")
	defer os.RemoveAll(dir)
	self, _ := os.Executable()
	cmd := exec.Command(self, "-child", dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	buf := make([]byte, 6)
	_, _ = io.ReadFull(out, buf)
	time.Sleep(5 * time.Second)
	cpu0 := cpuTime(cmd.Process.Pid)
	time.Sleep(*idle)
	cpu1 := cpuTime(cmd.Process.Pid)
	rss := rssKB(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	fmt.Printf("idle node (one process, no peers, all services), %v window after 5s settle\n", *idle)
	fmt.Printf("  RSS %.1f MiB, CPU %.2f%% of one core\n\n", float64(rss)/1024, 100*(cpu1-cpu0).Seconds()/idle.Seconds())
}

func formation() {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	t0 := time.Now()
	var ns []*node.Node
	var dirs []string
	defer func() {
		for _, n := range ns {
			n.Close()
		}
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}()
	var slowest time.Duration
	var boot string
	for i := 0; i < *nodes; i++ {
		dir, _ := os.MkdirTemp("", "daitn-bench")
		dirs = append(dirs, dir)
		c := cfgFor(dir)
		c.API.Listen = ""
		if i > 0 {
			c.Network.Bootstrap = []string{boot}
		}
		s0 := time.Now()
		n, err := node.New(ctx, c, node.WithLogger(quiet()), node.WithRecordValidator("bench", okValidator{}))
		if err != nil {
			fail(err)
		}
		slowest = max(slowest, time.Since(s0))
		if i == 0 {
			for _, a := range n.Multiaddrs() {
				if strings.Contains(a, "/tcp/") {
					boot = a
				}
			}
		}
		ns = append(ns, n)
	}
	started := time.Since(t0)
	// Every node stores one value; the network is formed when every node
	// can read the value of a random other node.
	for i, n := range ns {
		for {
			err := n.DHT().PutValue(ctx, "/bench/"+strconv.Itoa(i), []byte("v"+strconv.Itoa(i)))
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				fail(fmt.Errorf("put on node %d: %w", i, err))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var lat []time.Duration
	rounds := 0
	for {
		rounds++
		lat = lat[:0]
		var mu sync.Mutex
		var wg sync.WaitGroup
		okAll := true
		for i, n := range ns {
			j := rand.IntN(len(ns))
			for j == i {
				j = rand.IntN(len(ns))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				q0 := time.Now()
				lctx, lc := context.WithTimeout(ctx, 10*time.Second)
				v, err := n.DHT().GetValue(lctx, "/bench/"+strconv.Itoa(j), dht.Quorum(1))
				lc()
				mu.Lock()
				defer mu.Unlock()
				lat = append(lat, time.Since(q0))
				if err != nil || string(v) != "v"+strconv.Itoa(j) {
					okAll = false
				}
			}()
		}
		wg.Wait()
		if okAll {
			break
		}
		if ctx.Err() != nil {
			fail(fmt.Errorf("network did not form within %v", *timeout))
		}
	}
	total := time.Since(t0)
	fmt.Printf("%d in-process nodes bootstrapped off one\n", *nodes)
	fmt.Printf("  slowest node.New: %v\n", slowest.Round(time.Millisecond))
	fmt.Printf("  all started: %v; every DHT lookup succeeds after %v (%d lookup rounds of %d)\n", started.Round(time.Millisecond), total.Round(time.Millisecond), rounds, len(ns))
	fmt.Printf("  lookup latency in the final round: p50 %v  p99 %v\n", pct(lat, 50), pct(lat, 99))
	fmt.Printf("  mean routing table size: %.1f\n", meanRT(ns))
}

func meanRT(ns []*node.Node) float64 {
	s := 0
	for _, n := range ns {
		s += n.DHT().RoutingTable().Size()
	}
	return float64(s) / float64(len(ns))
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s) - 1) * p / 100
	return s[i].Round(100 * time.Microsecond)
}

func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}

func rssKB(pid int) int {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.Atoi(strings.Fields(l)[1])
			return v
		}
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
