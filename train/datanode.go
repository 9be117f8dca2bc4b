package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/dataset"
	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/descriptors/facts"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/taskpool"
	"github.com/daitn/daitn/transfer"
)

var datasetsPrefix = ds.NewKey("/train/datasets")

// DatasetInfo is a dataset this data node trains on.
type DatasetInfo struct {
	Name    string `json:"name"`
	Dir     string `json:"dir"`
	Task    string `json:"task"`
	Samples int    `json:"samples"`
	ID      string `json:"id,omitempty"` // descriptor slot id
}

type dataRole struct {
	agent *taskpool.Agent

	mu    sync.Mutex
	sets  map[string]*DatasetInfo
	cache map[string]*dataset.Set
	last  map[string][]cid.Cid // job -> roots to unpin when its next round comes
}

func (s *Service) startData(ctx context.Context) (*dataRole, error) {
	d := &dataRole{sets: map[string]*DatasetInfo{}, cache: map[string]*dataset.Set{}, last: map[string][]cid.Cid{}}
	res, err := s.store.Query(ctx, query.Query{Prefix: datasetsPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("list datasets: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return nil, fmt.Errorf("list datasets: %w", r.Error)
		}
		var info DatasetInfo
		if err := json.Unmarshal(r.Value, &info); err != nil {
			s.log.Warn("skip unreadable dataset entry", "key", r.Key, "err", err)
			continue
		}
		d.sets[info.Name] = &info
	}
	agent, err := s.pool.RunAgent(taskpool.AgentConfig{
		Pool:     Pool,
		Kinds:    []string{KindRound},
		Expected: 10 * time.Second,
		Capacity: s.cfg.capacity,
		Filter: func(t *taskpool.Task) bool {
			rt, err := UnmarshalRoundTask(t.Input)
			if err != nil {
				return false
			}
			d.mu.Lock()
			_, ok := d.sets[rt.Dataset]
			d.mu.Unlock()
			return ok
		},
		Handler: s.handleRound,
	})
	if err != nil {
		return nil, fmt.Errorf("run training agent: %w", err)
	}
	d.agent = agent
	return d, nil
}

// Datasets lists the datasets this data node trains on.
func (s *Service) Datasets() []DatasetInfo {
	if s.data == nil {
		return nil
	}
	s.data.mu.Lock()
	defer s.data.mu.Unlock()
	out := make([]DatasetInfo, 0, len(s.data.sets))
	for _, d := range s.data.sets {
		out = append(out, *d)
	}
	return out
}

// AddDataset registers a data directory (MNIST idx format: train-images and
// train-labels) under name, publishes its data descriptor (facts measured
// from the files, policy train-in-place) and makes it available for
// training rounds. The data itself never leaves this node.
func (s *Service) AddDataset(ctx context.Context, name, dir, task string) (DatasetInfo, error) {
	if s.data == nil {
		return DatasetInfo{}, fmt.Errorf("add dataset %s: %w %q (start the node with --roles data)", name, ErrNoRole, RoleData)
	}
	if name == "" || len(name) > descriptors.MaxNameLen || strings.ContainsAny(name, "/\\") {
		return DatasetInfo{}, fmt.Errorf("add dataset: name %q: want 1..%d characters without slashes", name, descriptors.MaxNameLen)
	}
	if task == "" {
		task = DefaultTask
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("add dataset %s: dir %q: %w", name, dir, err)
	}
	set, err := dataset.ReadDir(abs)
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("add dataset %s: %w", name, err)
	}
	tmpl := &descriptors.Descriptor{
		Header: descriptors.Header{Kind: descriptors.KindData, Name: name},
		Data: &descriptors.Data{
			Task: task, Modality: "image", Format: facts.FormatMNIST,
			Policy: descriptors.Policy{Mode: descriptors.PolicyTrainInPlace},
		},
	}
	signed, err := s.desc.PublishData(ctx, abs, tmpl, facts.Options{Format: facts.FormatMNIST})
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("add dataset %s: publish descriptor: %w", name, err)
	}
	info := DatasetInfo{Name: name, Dir: abs, Task: task, Samples: set.Len(), ID: signed.Slot.String()}
	b, _ := json.Marshal(info)
	if err := s.store.Put(ctx, datasetsPrefix.ChildString(name), b); err != nil {
		return DatasetInfo{}, fmt.Errorf("add dataset %s: persist: %w", name, err)
	}
	s.data.mu.Lock()
	s.data.sets[name] = &info
	s.data.cache[name] = set
	s.data.mu.Unlock()
	s.log.Info("dataset added", "name", name, "dir", abs, "samples", set.Len(), "descriptor", signed.Slot)
	return info, nil
}

// WriteMNISTShard writes shard k (1-based) of n of train into dir in the
// MNIST idx format, IID or the FedAvg paper's pathological non-IID split.
func WriteMNISTShard(train *dataset.Set, dir string, k, n int, nonIID bool, seed uint64) error {
	if n < 1 || k < 1 || k > n {
		return fmt.Errorf("mnist shard %d/%d: want 1 <= K <= N", k, n)
	}
	var sh *dataset.Set
	var err error
	if nonIID {
		sh, err = dataset.ShardNonIID(train, k-1, n, seed)
	} else {
		sh, err = dataset.ShardIID(train, k-1, n, seed)
	}
	if err != nil {
		return fmt.Errorf("mnist shard %d/%d: %w", k, n, err)
	}
	return dataset.WriteDir(dir, sh)
}

// ShardName is the dataset name AddMNISTShard uses.
func ShardName(k, n int, nonIID bool) string {
	if nonIID {
		return fmt.Sprintf("mnist-shard-%d-of-%d-noniid", k, n)
	}
	return fmt.Sprintf("mnist-shard-%d-of-%d", k, n)
}

// AddMNISTShard writes shard k (1-based) of n of the real MNIST training set
// under the node's data directory and adds it as a dataset.
func (s *Service) AddMNISTShard(ctx context.Context, k, n int, nonIID bool) (DatasetInfo, error) {
	if s.cfg.dataDir == "" {
		return DatasetInfo{}, errors.New("add mnist shard: the service has no data directory (WithDataDir)")
	}
	mdir, err := dataset.MNISTDir()
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("add mnist shard: %w", err)
	}
	train, err := dataset.ReadSet(mdir, dataset.TrainPrefix, 0)
	if err != nil {
		return DatasetInfo{}, fmt.Errorf("add mnist shard: %w", err)
	}
	name := ShardName(k, n, nonIID)
	dir := filepath.Join(s.cfg.dataDir, "datasets", name)
	if err := WriteMNISTShard(train, dir, k, n, nonIID, 1); err != nil {
		return DatasetInfo{}, err
	}
	return s.AddDataset(ctx, name, dir, DefaultTask)
}

func (d *dataRole) load(name string) (*dataset.Set, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if set, ok := d.cache[name]; ok {
		return set, nil
	}
	info, ok := d.sets[name]
	if !ok {
		return nil, fmt.Errorf("dataset %q is not held here", name)
	}
	set, err := dataset.ReadDir(info.Dir)
	if err != nil {
		return nil, err
	}
	d.cache[name] = set
	return set, nil
}

// handleRound is a data node's work for one round: fetch the global model
// from the poster, train it on the local dataset, offer the update (to the
// poster only) and say where it is.
func (s *Service) handleRound(ctx context.Context, t taskpool.Task) ([]byte, error) {
	rt, err := UnmarshalRoundTask(t.Input)
	if err != nil {
		return nil, err
	}
	poster, err := peer.Decode(t.Poster)
	if err != nil {
		return nil, fmt.Errorf("round task poster %q: %w", t.Poster, err)
	}
	set, err := s.data.load(rt.Dataset)
	if err != nil {
		return nil, fmt.Errorf("round %d of job %s: %w", rt.Round, rt.Job, err)
	}
	s.data.mu.Lock()
	old := s.data.last[rt.Job]
	delete(s.data.last, rt.Job)
	s.data.mu.Unlock()
	for _, c := range old {
		_ = s.xfer.Unpin(ctx, c)
	}

	root, _ := cid.Decode(rt.Model)
	start := time.Now()
	m, fetched, err := s.fetchModel(ctx, root, rt.Arch, poster)
	if err != nil {
		return nil, fmt.Errorf("round %d of job %s: %w", rt.Round, rt.Job, err)
	}
	fetchMs := time.Since(start).Milliseconds()

	n := set.Len()
	if rt.MaxSamples > 0 && rt.MaxSamples < n {
		n = rt.MaxSamples
	}
	dim := m.Arch.Inputs()
	if set.Rows*set.Cols != dim {
		return nil, fmt.Errorf("dataset %s has %d features per sample, model %s wants %d", rt.Dataset, set.Rows*set.Cols, rt.Arch, dim)
	}
	tstart := time.Now()
	res, err := learn.Train(ctx, m, learn.Data{X: set.X[:n*dim], Y: set.Y[:n]},
		learn.TrainConfig{Epochs: rt.Epochs, Batch: rt.Batch, LR: float32(rt.LR), Seed: rt.Seed})
	if err != nil {
		return nil, fmt.Errorf("round %d of job %s: train: %w", rt.Round, rt.Job, err)
	}
	trainMs := time.Since(tstart).Milliseconds()
	b, err := learn.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("round %d: encode update: %w", rt.Round, err)
	}
	up, err := s.xfer.AddBytes(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("round %d: store update: %w", rt.Round, err)
	}
	// The update is for the poster only.
	if err := s.xfer.SetPolicy(up, []peer.ID{poster}); err != nil {
		return nil, fmt.Errorf("round %d: restrict update: %w", rt.Round, err)
	}
	s.data.mu.Lock()
	s.data.last[rt.Job] = []cid.Cid{root, up}
	s.data.mu.Unlock()
	s.stats.trained.Add(1)
	s.log.Info("round trained", "job", rt.Job, "round", rt.Round, "dataset", rt.Dataset,
		"samples", n, "loss", res.Loss, "train_ms", trainMs, "fetch_ms", fetchMs)
	return MarshalRoundResult(&RoundResult{
		Update: up.String(), Samples: n, Loss: res.Loss, TrainMs: trainMs, FetchMs: fetchMs, FetchedBytes: fetched,
	})
}

// fetchModel fetches root from from (or anyone who has it) and decodes it
// as a model of arch; the size is checked against the architecture before
// a byte is decoded.
func (s *Service) fetchModel(ctx context.Context, root cid.Cid, arch string, from peer.ID) (*learn.Model, int64, error) {
	a, err := learn.LookupArch(arch)
	if err != nil {
		return nil, 0, err
	}
	want := int64(learn.ParamsOffset(a) + 4*a.NumParams())
	fctx, cancel := context.WithTimeout(ctx, s.cfg.fetchTimeout)
	defer cancel()
	// A root announcing far more bytes than the architecture's model is
	// not fetched further: the peer cannot make us download a big file.
	// (Progress counts blocks, manifests included, hence the slack.)
	var tooBig atomic.Int64
	opts := transfer.FetchOptions{ProgressInterval: 10 * time.Millisecond, Progress: func(p transfer.Progress) {
		if p.TotalBytes > want+want/8+64<<10 {
			tooBig.Store(p.TotalBytes)
			cancel()
		}
	}}
	if from != "" {
		opts.Providers = []peer.ID{from}
	}
	fr, err := s.xfer.Fetch(fctx, root, opts)
	if n := tooBig.Load(); n > 0 {
		return nil, 0, fmt.Errorf("model %s is %d bytes, a %s model is %d: %w", root, n, arch, want, learn.ErrShape)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("fetch model %s from %s: %w", root, from, err)
	}
	if int64(fr.Size) != want {
		return nil, fr.FetchedBytes, fmt.Errorf("model %s is %d bytes, a %s model is %d: %w", root, fr.Size, arch, want, learn.ErrShape)
	}
	var buf bytes.Buffer
	buf.Grow(int(want))
	if err := s.xfer.Export(fctx, root, &limitWriter{w: &buf, n: want}); err != nil {
		return nil, fr.FetchedBytes, fmt.Errorf("read model %s: %w", root, err)
	}
	m, err := learn.Unmarshal(buf.Bytes())
	if err != nil {
		return nil, fr.FetchedBytes, fmt.Errorf("decode model %s: %w", root, err)
	}
	if m.Arch.Name != arch {
		return nil, fr.FetchedBytes, fmt.Errorf("model %s is a %s, want %s: %w", root, m.Arch.Name, arch, learn.ErrShape)
	}
	return m, fr.FetchedBytes, nil
}

type limitWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("more than the expected size: %w", transfer.ErrTooLarge)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// Busy is the number of training rounds this data node is running.
func (s *Service) Busy() int {
	if s.data == nil || s.data.agent == nil {
		return 0
	}
	return s.data.agent.Active()
}
