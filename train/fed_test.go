package train_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/train"
)

// fedNode is a whole node (host, DHT, GossipSub, Pebble store) with the
// training stack on top.
type fedNode struct {
	nd    *nodetest.Node
	st    *train.Stack
	roles []string
	t     *testing.T
}

var (
	mnistOnce  sync.Once
	mnistTrain *dataset.Set
	mnistErr   error
)

const mnistTrainN = 60000

func loadMNIST() {
	dir, err := dataset.MNISTDir()
	if err != nil {
		mnistErr = err
		return
	}
	mnistTrain, mnistErr = dataset.ReadSet(dir, dataset.TrainPrefix, 0)
}

func mnistTrainSet(t *testing.T) *dataset.Set {
	t.Helper()
	mnistOnce.Do(loadMNIST)
	if mnistErr != nil {
		t.Fatalf("real MNIST: %v", mnistErr)
	}
	return mnistTrain
}

type fedConfig struct {
	data      int
	perNode   int // samples per data node's shard (default 1200)
	lease     time.Duration
	testLimit int
}

// startFed starts 1 MPVU (node 0, the bootstrap), cfg.data data nodes with
// IID MNIST shards, and a client (last).
func startFed(t *testing.T, cfg fedConfig) (mpvu *fedNode, data []*fedNode, client *fedNode) {
	t.Helper()
	n := cfg.data + 2
	t0 := time.Now()
	go mnistOnce.Do(loadMNIST) // load while the nodes start
	defer func() { t.Logf("federation of %d nodes ready in %v", n, time.Since(t0)) }()
	nodes := nodetest.Start(t, n, nodetest.WithoutServices(),
		nodetest.WithNodeOptions(node.WithRecordValidator(descriptors.RecordNamespace, descriptors.RecordValidator{})))
	var all []*fedNode
	for i, nd := range nodes {
		roles := []string{train.RoleData}
		switch {
		case i == 0:
			roles = []string{train.RoleMPVU}
		case i == n-1:
			roles = []string{train.RoleClient}
		}
		f := &fedNode{nd: nd, roles: roles, t: t}
		f.start(cfg)
		all = append(all, f)
	}
	t.Logf("stacks started in %v", time.Since(t0))
	ctx := context.Background()
	set := mnistTrainSet(t)
	t.Logf("mnist loaded in %v", time.Since(t0))
	per := cfg.perNode
	if per == 0 {
		per = 1200
	}
	shards := mnistTrainN / per
	for i := 1; i <= cfg.data; i++ {
		dir := filepath.Join(all[i].nd.DataDir(), "shard")
		if err := train.WriteMNISTShard(set, dir, i, shards, false, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := all[i].st.Train.AddDataset(ctx, train.ShardName(i, cfg.data, false), dir, ""); err != nil {
			t.Fatal(err)
		}
	}
	client = all[n-1]
	t.Logf("datasets published in %v", time.Since(t0))
	// Wait until the client's map holds every dataset and the MPVU.
	nodetest.Eventually(t, 30*time.Second, "client sees all datasets and the MPVU", func() bool {
		return client.sees(cfg.data)
	})
	return all[0], all[1 : n-1], client
}

func (f *fedNode) start(cfg fedConfig) {
	f.t.Helper()
	lease := cfg.lease
	if lease == 0 {
		lease = 3 * time.Second
	}
	st, err := train.NewStack(context.Background(), train.StackConfig{
		Host: f.nd.Host(), PubSub: f.nd.PubSub(), Routing: f.nd.DHT(), Store: f.nd.Store(),
		DataDir: f.nd.DataDir(), Logger: nodetest.Logger("train"), Roles: f.roles,
		Taskpool: []taskpool.Option{taskpool.WithDefaults(lease, 200*time.Millisecond, 10*time.Minute)},
		Train:    []train.Option{train.WithLease(lease), train.WithTestsetLimit(cfg.testLimit)},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
	f.t.Cleanup(func() { _ = st.Close() })
}

func (f *fedNode) sees(datasets int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, _ := f.st.Desc.Find(ctx, descriptors.Query{Kind: descriptors.KindData, Task: train.DefaultTask}, descriptors.FindOptions{})
	ts, _ := f.st.Desc.Find(ctx, descriptors.Query{Kind: descriptors.KindTestset, Task: train.DefaultTask}, descriptors.FindOptions{})
	return len(d) >= datasets && len(ts) >= 1
}

// kill crashes the node: its host goes away first (no goodbyes reach
// anyone), then the services stop, then the store closes.
func (f *fedNode) kill() {
	_ = f.nd.Host().Close()
	_ = f.st.Close()
	f.nd.Kill()
}

func (f *fedNode) restart(cfg fedConfig) {
	_ = f.st.Close()
	f.nd = f.nd.Restart()
	f.start(cfg)
}

func baseSpec() *train.JobSpec {
	return &train.JobSpec{
		Model:    train.ModelSpec{Arch: "mnist-2nn", Seed: 1},
		Target:   train.TargetSpec{Accuracy: 0.90, MaxRounds: 8},
		Data:     train.DataSpec{Task: train.DefaultTask, MinDatasets: 1},
		Settings: train.Settings{Clients: 4, Epochs: 1, Batch: 10, LR: 0.1, Seed: 1},
	}
}

func TestFederationTrainsMNIST(t *testing.T) {
	_, data, client := startFed(t, fedConfig{data: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	svc := client.st.Train

	// T-FAM rejects what the map cannot meet, with the reason.
	imp := baseSpec()
	imp.Data.MinDatasets = 10
	if _, err := svc.Submit(ctx, imp); !errors.Is(err, train.ErrNotAdmitted) || !strings.Contains(err.Error(), "only 4 of 10 data shards reachable") {
		t.Fatalf("impossible job: %v, want ErrNotAdmitted naming 4 of 10 shards", err)
	}
	imp = baseSpec()
	imp.Data.Task = "speech-recognition"
	if _, err := svc.Submit(ctx, imp); !errors.Is(err, train.ErrNotAdmitted) || !strings.Contains(err.Error(), "no MPVU with a test set for task speech-recognition") {
		t.Fatalf("job without an MPVU: %v", err)
	}

	spec := baseSpec()
	spec.Data.MinDatasets = 4
	job, err := svc.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Pause takes effect at the round boundary; settings changed while
	// paused apply from the next round.
	if err := svc.Pause(job.ID); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 90*time.Second, "job paused", func() bool {
		j, _ := svc.Job(job.ID)
		return j.State == train.StatePaused
	})
	j, _ := svc.Job(job.ID)
	paused := j.Round // 0, or 1 if round 1 was already in flight
	time.Sleep(300 * time.Millisecond)
	if j, _ = svc.Job(job.ID); j.Round != paused || j.State != train.StatePaused {
		t.Fatalf("paused job moved on: round %d state %s", j.Round, j.State)
	}
	three, lr := 3, 0.1
	if err := svc.Set(job.ID, train.SetRequest{Clients: &three, LR: &lr}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Set(job.ID, train.SetRequest{LR: ptr(-1.0)}); err == nil {
		t.Fatal("set lr=-1 accepted")
	}
	if err := svc.Resume(job.ID); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 90*time.Second, "a round after resume", func() bool {
		j, _ := svc.Job(job.ID)
		return j.Round > paused
	})
	j, _ = svc.Job(job.ID)
	if n := len(j.History[paused].Nodes); n != 3 || j.Settings.Clients != 3 {
		t.Fatalf("round %d used %d nodes (settings %+v), want the 3 set while paused", paused+1, n, j.Settings)
	}
	j, err = svc.Wait(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range j.History {
		t.Logf("round %d: accuracy %.4f loss %.4f nodes %d wall %dms train %dms bytes down %d up %d eval %d (full %d)",
			r.Round, r.Accuracy, r.Loss, len(r.Nodes), r.WallMs, r.TrainMs, r.BytesDown, r.BytesUp, r.BytesEval, r.FullBytes)
	}
	if j.State != train.StateDone || j.Accuracy < 0.90 {
		t.Fatalf("job %s: state %s (%s), accuracy %.4f, want done above 0.90", j.ID, j.State, j.Reason, j.Accuracy)
	}
	// Every accuracy came from a report signed by the chosen MPVU.
	last := j.History[len(j.History)-1]
	rep, err := train.VerifyReportSigner(last.Report, j.Admission.MPVU)
	if err != nil {
		t.Fatalf("last report: %v", err)
	}
	if rep.Model != j.Model || rep.Accuracy != j.Accuracy || rep.Samples != 10000 {
		t.Fatalf("report %+v does not match job model %s accuracy %.4f", rep, j.Model, j.Accuracy)
	}
	if len(last.Nodes) != 3 || len(data) != 4 {
		t.Fatalf("last round averaged %d updates, want the 3 set", len(last.Nodes))
	}
	var buf bytes.Buffer
	if err := svc.Model(ctx, j.ID, &buf); err != nil {
		t.Fatal(err)
	}
	if m, err := learn.Unmarshal(buf.Bytes()); err != nil || m.Arch.Name != "mnist-2nn" {
		t.Fatalf("trained model: %v", err)
	}

	// Stop ends a job at the next round boundary.
	spec.Target.Accuracy = 0.999
	job2, err := svc.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Stop(job2.ID); err != nil {
		t.Fatal(err)
	}
	j2, err := svc.Wait(ctx, job2.ID)
	if err != nil || j2.State != train.StateStopped || j2.Round > 1 {
		t.Fatalf("stopped job: %v state %s round %d", err, j2.State, j2.Round)
	}
	if err := svc.Resume(job2.ID); !errors.Is(err, train.ErrFinished) {
		t.Fatalf("resume of a stopped job: %v, want ErrFinished", err)
	}
}

func ptr[T any](v T) *T { return &v }
