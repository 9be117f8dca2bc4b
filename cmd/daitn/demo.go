package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/train"
)

func init() { rootCmd.AddCommand(demoCmd()) }

func demoCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "demo",
		Short: "Start a local federation on loopback and train a digit classifier on MNIST",
		Long: `demo starts real, separate daitn nodes in this process, each with its own data
directory and its own sockets on 127.0.0.1: an MPVU holding the MNIST test set,
--nodes data nodes each holding one shard of the MNIST training set, and a
client. The client submits a job (the 2NN of the FedAvg paper, target --target
test accuracy): every round the model goes to the data nodes, trains there, the
updates come back and are averaged, and the MPVU evaluates the new model and
signs the accuracy. The data never leaves its node. It stops when the target is
reached (or after --rounds rounds). Then the client's node serves the trained
model and the MPVU asks it, over /daitn/infer, to classify MNIST test digits.`,
		Args: cobra.NoArgs,
		RunE: runDemo,
	}
	f := c.Flags()
	f.Int("nodes", 10, "data nodes (each holds 1/N of the MNIST training set)")
	f.Float64("target", 0.97, "test accuracy to reach")
	f.Bool("non-iid", false, "pathological non-IID shards (each node mostly two digits)")
	f.Int("rounds", 50, "give up after this many rounds")
	f.Int("clients", 0, "data nodes per round (default all)")
	f.Int("epochs", 1, "local epochs per round (E)")
	f.Int("batch", 10, "local minibatch size (B)")
	f.Float64("lr", 0.1, "learning rate")
	f.String("dir", "", "keep the nodes' data directories here (default a temporary directory, removed at exit)")
	f.Bool("verbose", false, "show the nodes' logs")
	f.Int("samples", 0, "use only the first N training digits (default all 60,000)")
	f.Int("infer", 500, "test digits to classify with the trained model at the end (0: skip)")
	return c
}

type demoNode struct {
	nd *node.Node
	st *train.Stack
}

func runDemo(cmd *cobra.Command, _ []string) error {
	f := cmd.Flags()
	nData, _ := f.GetInt("nodes")
	target, _ := f.GetFloat64("target")
	nonIID, _ := f.GetBool("non-iid")
	rounds, _ := f.GetInt("rounds")
	clients, _ := f.GetInt("clients")
	epochs, _ := f.GetInt("epochs")
	batch, _ := f.GetInt("batch")
	lr, _ := f.GetFloat64("lr")
	dir, _ := f.GetString("dir")
	verbose, _ := f.GetBool("verbose")
	samples, _ := f.GetInt("samples")
	inferN, _ := f.GetInt("infer")
	if nData < 1 || nData > 100 {
		return fmt.Errorf("--nodes %d: want 1..100", nData)
	}
	if samples < 0 || samples > 0 && samples < 10*nData {
		return fmt.Errorf("--samples %d: want 0 (all) or at least 10 per data node", samples)
	}
	if inferN < 0 || inferN > 10000 {
		return fmt.Errorf("--infer %d: want 0..10000", inferN)
	}
	if clients == 0 {
		clients = nData
	}
	spec := &train.JobSpec{
		Name:     "demo",
		Model:    train.ModelSpec{Arch: "mnist-2nn", Seed: 1},
		Target:   train.TargetSpec{Accuracy: target, MaxRounds: rounds},
		Data:     train.DataSpec{Task: train.DefaultTask, MinDatasets: nData},
		Settings: train.Settings{Clients: clients, Epochs: epochs, Batch: batch, LR: lr, Seed: 1},
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("demo settings: %w", err)
	}
	w := cmd.OutOrStdout()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	if dir == "" {
		tmp, err := os.MkdirTemp("", "daitn-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	start := time.Now()

	// The training set loads while the nodes start.
	var mnist *dataset.Set
	var mnistErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d, err := dataset.MNISTDir()
		if err != nil {
			mnistErr = err
			return
		}
		if samples > 0 {
			mnist, mnistErr = dataset.ReadSetHead(d, dataset.TrainPrefix, samples)
			return
		}
		mnist, mnistErr = dataset.ReadSet(d, dataset.TrainPrefix, 0)
	}()

	var nodes []*demoNode
	defer func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			_ = nodes[i].st.Close()
			_ = nodes[i].nd.Close()
		}
	}()
	boot := ""
	total := nData + 2
	for i := 0; i < total; i++ {
		roles := []string{train.RoleData}
		name := fmt.Sprintf("data-%02d", i)
		switch i {
		case 0:
			roles, name = []string{train.RoleMPVU}, "mpvu"
		case total - 1:
			roles, name = []string{train.RoleClient}, "client"
		}
		cfg := node.DefaultConfig(filepath.Join(dir, name))
		cfg.Roles = roles
		cfg.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.Network.MDNS, cfg.Network.NATPortMap, cfg.Network.Relay = false, false, false
		cfg.Network.DHTMode = node.DHTServer
		cfg.API.Listen = "127.0.0.1:0"
		cfg.LogLevel = "warn"
		if boot != "" {
			cfg.Network.Bootstrap = []string{boot}
		}
		if _, err := node.Init(cfg.DataDir); err != nil {
			return err
		}
		nd, err := node.New(ctx, cfg, node.WithoutServices(), node.WithLogger(log),
			node.WithRecordValidator(descriptors.RecordNamespace, descriptors.RecordValidator{}))
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		if boot == "" {
			for _, a := range nd.Multiaddrs() {
				boot = a
				break
			}
		}
		st, err := train.NewStack(ctx, train.StackConfig{
			Host: nd.Host(), PubSub: nd.PubSub(), Routing: nd.DHT(), Store: nd.Store(),
			DataDir: nd.DataDir(), Logger: log, Roles: roles,
			Taskpool: []taskpool.Option{taskpool.WithDefaults(10*time.Second, 200*time.Millisecond, 10*time.Minute)},
			Train:    []train.Option{train.WithLease(10 * time.Second)},
		})
		if err != nil {
			_ = nd.Close()
			return fmt.Errorf("start %s services: %w", name, err)
		}
		nodes = append(nodes, &demoNode{nd: nd, st: st})
		fmt.Fprintf(w, "started %-8s %s  roles %v\n", name, nd.ID(), roles)
	}
	wg.Wait()
	if mnistErr != nil {
		return fmt.Errorf("load MNIST: %w", mnistErr)
	}
	split := "IID"
	if nonIID {
		split = "non-IID"
	}
	for i := 1; i <= nData; i++ {
		n := nodes[i]
		sdir := filepath.Join(n.nd.DataDir(), "datasets", train.ShardName(i, nData, nonIID))
		if err := train.WriteMNISTShard(mnist, sdir, i, nData, nonIID, 1); err != nil {
			return err
		}
		if _, err := n.st.Train.AddDataset(ctx, train.ShardName(i, nData, nonIID), sdir, train.DefaultTask); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "published %d %s MNIST shards of %d samples each\n", nData, split, mnist.Len()/nData)

	client := nodes[total-1]
	fmt.Fprintf(w, "client is discovering datasets and the MPVU through the DHT and gossip...\n")
	var job *train.Job
	var err error
	for {
		job, err = client.st.Train.Submit(ctx, spec)
		if err == nil {
			break
		}
		if !errors.Is(err, train.ErrNotAdmitted) || ctx.Err() != nil || time.Since(start) > 2*time.Minute {
			return fmt.Errorf("submit: %w", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	fmt.Fprintf(w, "job %s admitted: %d datasets, MPVU %s; 2NN (199,210 parameters), E=%d B=%d lr=%g, %d clients per round, target %.2f%%\n",
		job.ID, job.Admission.Datasets, job.Admission.MPVU, epochs, batch, lr, clients, 100*target)
	evs := client.st.Train.Subscribe(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-evs:
			if !ok {
				return errors.New("training service closed")
			}
			if ev.Job != job.ID {
				continue
			}
			switch ev.Type {
			case "round":
				fmt.Fprintln(w, trainRoundLine(ev.Record))
			case "rejected", "ignored", "failed":
				fmt.Fprintf(w, "  %s: %s\n", ev.Type, ev.Message)
			case "state":
				if !ev.State.Terminal() {
					continue
				}
				j, _ := client.st.Train.Job(job.ID)
				fmt.Fprintf(w, "job %s %s after %d rounds in %s: %s\n", j.ID, j.State, j.Round, time.Since(start).Round(time.Second), j.Reason)
				if j.Accuracy >= target {
					fmt.Fprintf(w, "test accuracy %.2f%%, signed by MPVU %s; global model %s\n", 100*j.Accuracy, j.Admission.MPVU, j.Model)
					if inferN == 0 {
						return nil
					}
					return demoInfer(ctx, w, log, nodes[0], client, j, inferN)
				}
				return &exitError{code: 2, err: fmt.Errorf("target %.4f not reached: %.4f", target, j.Accuracy)}
			}
		}
	}
}
