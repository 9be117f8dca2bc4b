// Command train measures federated training rounds on real nodes over
// loopback: an MPVU, N data nodes with IID MNIST shards and a client, all in
// this process with their own sockets and stores. It prints, per round, the
// wall time split into local training compute, model distribution,
// collecting updates, averaging and the MPVU's evaluation, and the bytes
// moved against sending the full model both ways to every participant.
//
//	go run ./bench/train -nodes 10 -rounds 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/train"
)

func main() {
	nData := flag.Int("nodes", 10, "data nodes")
	rounds := flag.Int("rounds", 5, "rounds to run")
	epochs := flag.Int("epochs", 1, "local epochs E")
	batch := flag.Int("batch", 10, "minibatch B")
	lr := flag.Float64("lr", 0.1, "learning rate")
	clients := flag.Int("clients", 0, "data nodes per round (default all)")
	perNode := flag.Int("samples", 0, "samples each node trains on per round (0 = its whole shard)")
	flag.Parse()
	if err := run(*nData, *rounds, *epochs, *batch, *lr, *clients, *perNode); err != nil {
		fmt.Fprintln(os.Stderr, "bench/train:", err)
		os.Exit(1)
	}
}

type member struct {
	nd *node.Node
	st *train.Stack
}

func run(nData, rounds, epochs, batch int, lr float64, clients, perNode int) error {
	ctx := context.Background()
	if clients == 0 {
		clients = nData
	}
	dir, err := os.MkdirTemp("", "daitn-bench-train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mdir, err := dataset.MNISTDir()
	if err != nil {
		return err
	}
	mnist, err := dataset.ReadSet(mdir, dataset.TrainPrefix, 0)
	if err != nil {
		return err
	}
	var ms []*member
	defer func() {
		for i := len(ms) - 1; i >= 0; i-- {
			_ = ms[i].st.Close()
			_ = ms[i].nd.Close()
		}
	}()
	boot := ""
	for i := 0; i < nData+2; i++ {
		roles := []string{train.RoleData}
		if i == 0 {
			roles = []string{train.RoleMPVU}
		} else if i == nData+1 {
			roles = []string{train.RoleClient}
		}
		cfg := node.DefaultConfig(filepath.Join(dir, fmt.Sprint(i)))
		cfg.Roles = roles
		cfg.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.Network.MDNS, cfg.Network.NATPortMap, cfg.Network.Relay = false, false, false
		cfg.Network.DHTMode = node.DHTServer
		cfg.API.Listen = "127.0.0.1:0"
		if boot != "" {
			cfg.Network.Bootstrap = []string{boot}
		}
		if _, err := node.Init(cfg.DataDir); err != nil {
			return err
		}
		nd, err := node.New(ctx, cfg, node.WithoutServices(), node.WithLogger(log),
			node.WithRecordValidator(descriptors.RecordNamespace, descriptors.RecordValidator{}))
		if err != nil {
			return err
		}
		if boot == "" {
			boot = nd.Multiaddrs()[0]
		}
		st, err := train.NewStack(ctx, train.StackConfig{
			Host: nd.Host(), PubSub: nd.PubSub(), Routing: nd.DHT(), Store: nd.Store(),
			DataDir: nd.DataDir(), Logger: log, Roles: roles,
			Taskpool: []taskpool.Option{taskpool.WithDefaults(10*time.Second, 200*time.Millisecond, 10*time.Minute)},
			Train:    []train.Option{train.WithLease(10 * time.Second)},
		})
		if err != nil {
			_ = nd.Close()
			return err
		}
		ms = append(ms, &member{nd, st})
	}
	for i := 1; i <= nData; i++ {
		sdir := filepath.Join(ms[i].nd.DataDir(), "shard")
		if err := train.WriteMNISTShard(mnist, sdir, i, nData, false, 1); err != nil {
			return err
		}
		if _, err := ms[i].st.Train.AddDataset(ctx, train.ShardName(i, nData, false), sdir, ""); err != nil {
			return err
		}
	}
	client := ms[nData+1].st.Train
	spec := &train.JobSpec{
		Model:    train.ModelSpec{Arch: "mnist-2nn", Seed: 1},
		Target:   train.TargetSpec{Accuracy: 1, MaxRounds: rounds},
		Data:     train.DataSpec{Task: train.DefaultTask, MinDatasets: nData},
		Settings: train.Settings{Clients: clients, Epochs: epochs, Batch: batch, LR: lr, Seed: 1, MaxSamples: perNode},
	}
	var job *train.Job
	deadline := time.Now().Add(time.Minute)
	for {
		job, err = client.Submit(ctx, spec)
		if err == nil {
			break
		}
		if !errors.Is(err, train.ErrNotAdmitted) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	j, err := client.Wait(ctx, job.ID)
	if err != nil {
		return err
	}
	fmt.Printf("federated 2NN on real MNIST: %d data nodes (%d samples each), %d per round, E=%d B=%d lr=%g, GOMAXPROCS=%d, %s/%s\n",
		nData, mnist.Len()/nData, clients, epochs, batch, lr, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\taccuracy\twall ms\tslowest node ms\t(train ms\tmodel fetch ms)\tcollect ms\taverage ms\teval ms\tcoordination ms\tdown MiB\tup MiB\teval MiB\tfull both ways MiB\tmoved/full\t")
	var sum train.RoundRecord
	for _, r := range j.History {
		other := r.WallMs - r.NodeMs - r.CollectMs - r.AggregateMs - r.EvalMs
		fmt.Fprintf(tw, "%d\t%.4f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t\n", r.Round, r.Accuracy, r.WallMs, r.NodeMs, r.TrainMs, r.FetchMs,
			r.CollectMs, r.AggregateMs, r.EvalMs, other, mib(r.BytesDown), mib(r.BytesUp), mib(r.BytesEval), mib(r.FullBytes),
			float64(r.BytesDown+r.BytesUp)/float64(r.FullBytes))
		sum.WallMs += r.WallMs
		sum.TrainMs += r.TrainMs
		sum.NodeMs += r.NodeMs
		sum.FetchMs += r.FetchMs
		sum.CollectMs += r.CollectMs
		sum.AggregateMs += r.AggregateMs
		sum.EvalMs += r.EvalMs
		sum.BytesDown += r.BytesDown
		sum.BytesUp += r.BytesUp
		sum.FullBytes += r.FullBytes
	}
	n := int64(len(j.History))
	if n > 0 {
		other := sum.WallMs - sum.NodeMs - sum.CollectMs - sum.AggregateMs - sum.EvalMs
		fmt.Fprintf(tw, "mean\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t\t%.2f\t%.3f\t\n", sum.WallMs/n, sum.NodeMs/n, sum.TrainMs/n, sum.FetchMs/n,
			sum.CollectMs/n, sum.AggregateMs/n, sum.EvalMs/n, other/n, mib(sum.BytesDown/n), mib(sum.BytesUp/n), mib(sum.FullBytes/n),
			float64(sum.BytesDown+sum.BytesUp)/float64(sum.FullBytes))
		fmt.Fprintf(tw, "share of wall\t\t100%%\t%.0f%%\t\t\t%.0f%%\t%.0f%%\t%.0f%%\t%.0f%%\t\t\t\t\t\t\n",
			pct(sum.NodeMs, sum.WallMs), pct(sum.CollectMs, sum.WallMs),
			pct(sum.AggregateMs, sum.WallMs), pct(sum.EvalMs, sum.WallMs), pct(other, sum.WallMs))
	}
	return tw.Flush()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func pct(a, b int64) float64 { return 100 * float64(a) / float64(b) }
