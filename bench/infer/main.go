// Command infer measures a query's latency over /daitn/infer against the
// same prediction made in process: three real nodes on loopback (a
// bootstrap, a model host, a client), a 2NN trained here on real MNIST,
// and real MNIST test digits sent as PNG.
//
//	go run ./bench/infer                 # 2000 queries of each kind
//	go run ./bench/infer -n 500 -par 4
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/routing"
)

var (
	n     = flag.Int("n", 2000, "queries per measurement")
	par   = flag.Int("par", 4, "concurrent clients in the throughput run")
	train = flag.Int("train", 10000, "MNIST training digits the model is trained on")
)

const skill = "classify-digits"

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/infer:", err)
	os.Exit(1)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(ctx context.Context, dir, boot string) *node.Node {
	c := node.DefaultConfig(dir)
	c.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	c.Network.MDNS, c.Network.NATPortMap, c.Network.Relay = false, false, false
	c.Network.DHTMode = node.DHTServer
	c.API.Listen = "127.0.0.1:0"
	c.LogLevel = "error"
	c.Services = map[string]map[string]any{"overlay": {"interval": "1s"}}
	if boot != "" {
		c.Network.Bootstrap = []string{boot}
	}
	if _, err := node.Init(dir); err != nil {
		fail(err)
	}
	nd, err := node.New(ctx, c, node.WithLogger(quiet()))
	if err != nil {
		fail(err)
	}
	return nd
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func report(name string, d []time.Duration, total time.Duration) {
	fmt.Printf("| %s | %d | %v | %v | %v | %.0f |\n", name, len(d), pct(d, 50).Round(time.Microsecond),
		pct(d, 99).Round(time.Microsecond), pct(d, 100).Round(time.Microsecond), float64(len(d))/total.Seconds())
}

func main() {
	flag.Parse()
	ctx := context.Background()
	dir, err := dataset.MNISTDir()
	if err != nil {
		fail(err)
	}
	tr, err := dataset.ReadSetHead(dir, dataset.TrainPrefix, *train)
	if err != nil {
		fail(err)
	}
	te, err := dataset.ReadSetHead(dir, dataset.TestPrefix, 10000)
	if err != nil {
		fail(err)
	}
	m, _ := learn.New(learn.MNIST2NN, 1)
	if _, err := learn.Train(ctx, m, learn.Data{X: tr.X, Y: tr.Y}, learn.TrainConfig{Epochs: 2, Batch: 10, LR: 0.05, Seed: 1}); err != nil {
		fail(err)
	}
	ev, _ := learn.Evaluate(m, learn.Data{X: te.X, Y: te.Y})
	weights, _ := learn.Marshal(m)
	pngs := make([][]byte, *n)
	for i := range pngs {
		var b bytes.Buffer
		j := i % te.Len()
		if err := infer.EncodePNG(&b, te.X[j*784:(j+1)*784]); err != nil {
			fail(err)
		}
		pngs[i] = b.Bytes()
	}

	tmp, _ := os.MkdirTemp("", "daitn-bench-infer")
	defer os.RemoveAll(tmp)
	boot := start(ctx, filepath.Join(tmp, "boot"), "")
	defer boot.Close()
	var bootAddr string
	for _, a := range boot.Multiaddrs() {
		bootAddr = a
		break
	}
	host := start(ctx, filepath.Join(tmp, "host"), bootAddr)
	defer host.Close()
	client := start(ctx, filepath.Join(tmp, "client"), bootAddr)
	defer client.Close()
	root, err := host.Transfer().AddBytes(ctx, weights)
	if err != nil {
		fail(err)
	}
	sd, err := host.Descriptors().Publish(ctx, &descriptors.Descriptor{
		Header: descriptors.Header{Kind: descriptors.KindModel, Name: "mnist-2nn"},
		Model: &descriptors.Model{Version: "1", Architecture: learn.MNIST2NN, Skills: []string{skill},
			ClaimedAccuracy: ev.Accuracy, LatencyMs: 1, WeightsRoot: root.String()},
	})
	if err != nil {
		fail(err)
	}
	spec := routing.QuerySpec{Skill: skill}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if adm, err := routing.QFAM(client.Overlay().Snapshot(), spec); err == nil && adm.Admit {
			break
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("the model did not reach the client's map in 60s"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Warm up: the host loads the model on the first query.
	if _, err := client.Infer().Query(ctx, spec, pngs[0]); err != nil {
		fail(err)
	}

	fmt.Printf("bench/infer %s, %d CPUs, %s; 2NN trained on %d digits, test accuracy %.4f\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.Version(), *train, ev.Accuracy)
	fmt.Println("| what | queries | p50 | p99 | max | queries/s |")
	fmt.Println("|---|---|---|---|---|---|")

	measure := func(name string, f func(i int) error) {
		d := make([]time.Duration, *n)
		t0 := time.Now()
		for i := range d {
			s := time.Now()
			if err := f(i); err != nil {
				fail(fmt.Errorf("%s: %w", name, err))
			}
			d[i] = time.Since(s)
		}
		report(name, d, time.Since(t0))
	}
	measure("in process: Predict", func(i int) error {
		j := i % te.Len()
		_, _, err := m.Predict(te.X[j*784 : (j+1)*784])
		return err
	})
	measure("in process: decode PNG + Predict", func(i int) error {
		x, err := infer.DecodeInput(infer.FormatAuto, pngs[i], 784)
		if err == nil {
			_, _, err = m.Predict(x)
		}
		return err
	})
	correct := 0
	measure("by skill: Q-FAM + Q-IRCE + stream", func(i int) error {
		res, err := client.Infer().Query(ctx, spec, pngs[i])
		if err == nil && res.Class == int(te.Y[i%te.Len()]) {
			correct++
		}
		return err
	})
	measure("one host: Ask (no planner)", func(i int) error {
		_, err := client.Infer().Ask(ctx, host.ID(), sd.Slot.String(), "", pngs[i])
		return err
	})

	// Throughput with several clients at once (the host's default limits).
	d := make([]time.Duration, *n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	busy := 0
	t0 := time.Now()
	for w := 0; w < *par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= *n {
					return
				}
				s := time.Now()
				_, err := client.Infer().Query(ctx, spec, pngs[i])
				mu.Lock()
				d[i] = time.Since(s)
				if err != nil {
					busy++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	report(fmt.Sprintf("by skill, %d clients at once", *par), d, time.Since(t0))
	fmt.Printf("\nnetwork answers right on %d of %d test digits (%.4f); %d of the concurrent queries failed\n", correct, *n, float64(correct)/float64(*n), busy)
}
