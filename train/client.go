package train

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/taskpool"
)

var jobsPrefix = ds.NewKey("/train/jobs")

// JobState is where a job is.
type JobState string

// Job states. Running and paused jobs resume when the service restarts.
const (
	StateRunning JobState = "running"
	StatePaused  JobState = "paused"
	StateStopped JobState = "stopped"
	StateDone    JobState = "done"
	StateFailed  JobState = "failed"
)

// Terminal reports whether nothing more happens to a job in st.
func (st JobState) Terminal() bool {
	return st == StateStopped || st == StateDone || st == StateFailed
}

// Job is a training job as its client keeps it: the spec, the current
// settings, the last checkpoint (global model root and round) and the
// history of rounds.
type Job struct {
	ID        string            `json:"id"`
	Spec      JobSpec           `json:"spec"`
	State     JobState          `json:"state"`
	Reason    string            `json:"reason,omitempty"`
	Settings  Settings          `json:"settings"`
	Admission Admission         `json:"admission"`
	Round     int               `json:"round"` // completed rounds
	Model     string            `json:"model"` // global model root after Round
	Accuracy  float64           `json:"accuracy"`
	Loss      float64           `json:"loss"`
	Excluded  map[string]string `json:"excluded,omitempty"` // peer -> why
	History   []RoundRecord     `json:"history,omitempty"`
	Pending   []string          `json:"pending,omitempty"` // task ids of the round in flight
	Resumed   int               `json:"resumed,omitempty"` // times the job resumed after a restart
	Created   time.Time         `json:"created"`
	Updated   time.Time         `json:"updated"`
}

// RoundRecord is what one round did.
type RoundRecord struct {
	Round          int               `json:"round"`
	Accuracy       float64           `json:"accuracy"` // from the MPVU's signed report; -1 if none
	Loss           float64           `json:"loss"`
	TrainLoss      float64           `json:"train_loss"`
	Nodes          []string          `json:"nodes"`              // peers whose updates were averaged
	Failed         map[string]string `json:"failed,omitempty"`   // peer -> why its part was lost
	Rejected       map[string]string `json:"rejected,omitempty"` // peer -> why its update was refused
	Samples        int               `json:"samples"`
	Model          string            `json:"model"`
	BytesDown      int64             `json:"bytes_down"`       // global model to data nodes, as they report
	ServedByClient int64             `json:"served_by_client"` // of which the client served
	BytesUp        int64             `json:"bytes_up"`         // updates back
	BytesEval      int64             `json:"bytes_eval"`       // model to the MPVU
	FullBytes      int64             `json:"full_bytes"`       // the full model both ways per participant
	ModelBytes     int64             `json:"model_bytes"`      // size of one model
	WallMs         int64             `json:"wall_ms"`          // whole round
	TrainMs        int64             `json:"train_ms"`         // slowest data node's local training
	FetchMs        int64             `json:"fetch_ms"`         // slowest data node's model fetch
	NodeMs         int64             `json:"node_ms"`          // slowest data node's fetch + train
	CollectMs      int64             `json:"collect_ms"`       // fetching and checking updates
	AggregateMs    int64             `json:"aggregate_ms"`     // FedAvg
	EvalMs         int64             `json:"eval_ms"`          // MPVU round trip including its fetch
	Planner        string            `json:"planner"`          // "mtrce" (routing, on the live map) or "builtin"
	Report         []byte            `json:"report,omitempty"`
	Evaluator      string            `json:"evaluator,omitempty"`
	Time           time.Time         `json:"time"`
}

type jobRun struct {
	job    *Job // guarded by Service.mu
	pause  bool
	stop   bool
	set    *SetRequest
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func jobKey(id string) ds.Key { return jobsPrefix.ChildString(id) }

func (s *Service) saveLocked(ctx context.Context, j *Job) error {
	j.Updated = time.Now().UTC()
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return s.store.Put(ctx, jobKey(j.ID), b)
}

func (s *Service) loadJobs(ctx context.Context) error {
	res, err := s.store.Query(ctx, query.Query{Prefix: jobsPrefix.String()})
	if err != nil {
		return err
	}
	var jobs []*Job
	for r := range res.Next() {
		if r.Error != nil {
			res.Close()
			return r.Error
		}
		var j Job
		if err := json.Unmarshal(r.Value, &j); err != nil {
			s.log.Warn("skip unreadable job", "key", r.Key, "err", err)
			continue
		}
		jobs = append(jobs, &j)
	}
	res.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		run := &jobRun{job: j, wake: make(chan struct{}, 1), done: make(chan struct{})}
		s.jobs[j.ID] = run
		if j.State.Terminal() {
			close(run.done)
			continue
		}
		j.Resumed++
		if j.State == StatePaused {
			run.pause = true
		}
		s.log.Info("resuming job from checkpoint", "job", j.ID, "round", j.Round, "model", j.Model)
		s.startRunLocked(run)
	}
	return nil
}

// Submit admits a job (T-FAM over the client's current view of the
// network) and starts it. A job that cannot be met is rejected with the
// reasons and nothing is stored.
func (s *Service) Submit(ctx context.Context, spec *JobSpec) (*Job, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	cands, evals, err := s.discover(ctx, spec, nil)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	adm := Admit(spec, cands, evals)
	if reasons, ok := s.mapAdmit(spec); !ok {
		adm.OK = false
		adm.Reasons = append(adm.Reasons, reasons...)
	}
	if !adm.OK {
		return nil, fmt.Errorf("%w: %s", ErrNotAdmitted, joinReasons(adm.Reasons))
	}
	idb := make([]byte, 8)
	_, _ = rand.Read(idb)
	j := &Job{
		ID: hex.EncodeToString(idb), Spec: *spec, State: StateRunning,
		Settings: spec.Settings.withDefaults(), Admission: adm, Excluded: map[string]string{},
		Accuracy: -1, Created: time.Now().UTC(),
	}
	if j.Settings.Seed == 0 {
		j.Settings.Seed = 1
	}
	// Round 0's model: the given initial weights or a fresh init.
	if spec.Model.Initial != "" {
		root, _ := cid.Decode(spec.Model.Initial)
		if _, _, err := s.fetchModel(ctx, root, spec.Model.Arch, ""); err != nil {
			return nil, fmt.Errorf("submit: model.initial: %w", err)
		}
		j.Model = root.String()
	} else {
		seed := spec.Model.Seed
		if seed == 0 {
			seed = 1
		}
		m, err := learn.New(spec.Model.Arch, seed)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		b, err := learn.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		root, err := s.publishModel(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("submit: store initial model: %w", err)
		}
		j.Model = root.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.saveLocked(ctx, j); err != nil {
		return nil, fmt.Errorf("submit: persist job: %w", err)
	}
	run := &jobRun{job: j, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.jobs[j.ID] = run
	s.startRunLocked(run)
	s.log.Info("job admitted", "job", j.ID, "datasets", adm.Datasets, "mpvu", adm.MPVU)
	cp := cloneJob(j)
	return cp, nil
}

func joinReasons(r []string) string {
	var b bytes.Buffer
	for i, x := range r {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(x)
	}
	return b.String()
}

func (s *Service) startRunLocked(run *jobRun) {
	ctx, cancel := context.WithCancel(s.ctx)
	run.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(run.done)
		defer cancel()
		s.runJob(ctx, run)
	}()
}

func cloneJob(j *Job) *Job {
	b, _ := json.Marshal(j)
	var c Job
	_ = json.Unmarshal(b, &c)
	return &c
}

// Jobs lists the jobs this client runs or ran, newest first.
func (s *Service) Jobs() []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Job, 0, len(s.jobs))
	for _, r := range s.jobs {
		c := cloneJob(r.job)
		c.History = nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Created.After(out[k].Created) })
	return out
}

// Job returns one job with its history.
func (s *Service) Job(id string) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %q: %w", id, ErrNoJob)
	}
	return cloneJob(r.job), nil
}

// Wait blocks until job id is terminal (or ctx ends) and returns it.
func (s *Service) Wait(ctx context.Context, id string) (*Job, error) {
	s.mu.Lock()
	r, ok := s.jobs[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("job %q: %w", id, ErrNoJob)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Job(id)
}

func (s *Service) control(id string, f func(r *jobRun) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.jobs[id]
	if !ok {
		return fmt.Errorf("job %q: %w", id, ErrNoJob)
	}
	if r.job.State.Terminal() {
		return fmt.Errorf("job %s is %s: %w", id, r.job.State, ErrFinished)
	}
	if err := f(r); err != nil {
		return err
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pause stops the job at the next round boundary; Resume continues it.
func (s *Service) Pause(id string) error {
	return s.control(id, func(r *jobRun) error { r.pause = true; return nil })
}

// Resume continues a paused job.
func (s *Service) Resume(id string) error {
	return s.control(id, func(r *jobRun) error { r.pause = false; return nil })
}

// Stop ends the job at the next round boundary; the model so far stays.
func (s *Service) Stop(id string) error {
	return s.control(id, func(r *jobRun) error { r.stop = true; return nil })
}

// Set changes settings from the next round on.
func (s *Service) Set(id string, req SetRequest) error {
	return s.control(id, func(r *jobRun) error {
		if _, err := req.apply(r.job.Settings); err != nil {
			return err
		}
		if r.set == nil {
			r.set = &SetRequest{}
		}
		merge(r.set, req)
		return nil
	})
}

func merge(dst *SetRequest, src SetRequest) {
	if src.LR != nil {
		dst.LR = src.LR
	}
	if src.Clients != nil {
		dst.Clients = src.Clients
	}
	if src.Epochs != nil {
		dst.Epochs = src.Epochs
	}
	if src.Batch != nil {
		dst.Batch = src.Batch
	}
	if src.MaxSamples != nil {
		dst.MaxSamples = src.MaxSamples
	}
}

// Model writes the job's current global model (learn's encoding) to w.
func (s *Service) Model(ctx context.Context, id string, w interface{ Write([]byte) (int, error) }) error {
	j, err := s.Job(id)
	if err != nil {
		return err
	}
	root, err := cid.Decode(j.Model)
	if err != nil {
		return fmt.Errorf("job %s model %q: %w", id, j.Model, err)
	}
	return s.xfer.Export(ctx, root, w)
}

// setState changes a job's state durably and tells watchers.
func (s *Service) setState(run *jobRun, st JobState, reason string) {
	s.mu.Lock()
	run.job.State, run.job.Reason = st, reason
	err := s.saveLocked(context.Background(), run.job)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("persist job state", "job", run.job.ID, "err", err)
	}
	s.emit(Event{Job: run.job.ID, Type: "state", State: st, Round: run.job.Round, Message: reason})
}

// runJob is a job's loop: control at round boundaries, then one round.
func (s *Service) runJob(ctx context.Context, run *jobRun) {
	failures := 0
	for {
		// Round boundary: apply set, pause, stop, and the end conditions.
		s.mu.Lock()
		j := run.job
		if run.set != nil {
			if st, err := run.set.apply(j.Settings); err == nil {
				j.Settings = st
			}
			run.set = nil
			_ = s.saveLocked(ctx, j)
		}
		stop, pause := run.stop, run.pause
		spec, round, acc := j.Spec, j.Round, j.Accuracy
		deadline := time.Time{}
		if spec.Target.Deadline.Duration > 0 {
			deadline = j.Created.Add(spec.Target.Deadline.Duration)
		}
		s.mu.Unlock()
		maxRounds := spec.Target.MaxRounds
		if maxRounds == 0 {
			maxRounds = MaxRounds
		}
		switch {
		case stop:
			s.setState(run, StateStopped, "stopped by the user")
			return
		case acc >= spec.Target.Accuracy:
			s.setState(run, StateDone, fmt.Sprintf("target accuracy %.4f reached: %.4f after %d rounds", spec.Target.Accuracy, acc, round))
			return
		case round >= maxRounds:
			s.setState(run, StateDone, fmt.Sprintf("max rounds %d reached, accuracy %.4f (target %.4f)", maxRounds, acc, spec.Target.Accuracy))
			return
		case !deadline.IsZero() && time.Now().After(deadline):
			s.setState(run, StateStopped, fmt.Sprintf("deadline %s passed at round %d, accuracy %.4f", spec.Target.Deadline, round, acc))
			return
		case pause:
			if j.State != StatePaused {
				s.setState(run, StatePaused, "paused by the user")
			}
			var expire <-chan time.Time
			if !deadline.IsZero() {
				expire = time.After(time.Until(deadline))
			}
			select {
			case <-run.wake:
				continue
			case <-expire:
				continue // the deadline case above ends the job
			case <-ctx.Done():
				return
			}
		}
		if j.State != StateRunning {
			s.setState(run, StateRunning, "")
		}
		rec, err := s.runRound(ctx, run)
		if ctx.Err() != nil {
			return // closing: the job resumes from its checkpoint
		}
		if err != nil {
			s.stats.roundsFailed.Add(1)
			failures++
			s.log.Warn("round failed", "job", j.ID, "round", round+1, "err", err, "failures", failures)
			s.emit(Event{Job: j.ID, Type: "failed", Round: round + 1, Message: err.Error()})
			if failures >= 5 {
				s.setState(run, StateFailed, fmt.Sprintf("round %d failed %d times: %v", round+1, failures, err))
				return
			}
			select {
			case <-time.After(time.Duration(failures) * time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		failures = 0
		s.emit(Event{Job: j.ID, Type: "round", Round: rec.Round, Record: rec})
	}
}

// discover asks the descriptors service for the datasets and MPVUs that fit
// the spec and marks which are reachable now.
func (s *Service) discover(ctx context.Context, spec *JobSpec, excluded map[string]string) ([]Candidate, []Evaluator, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.findTimeout)
	defer cancel()
	q := descriptors.Query{Kind: descriptors.KindData, Task: spec.Data.Task, MinSamples: spec.Data.MinSamples, MaxAge: spec.Data.MaxAge.Duration}
	res, err := s.desc.Find(fctx, q, descriptors.FindOptions{})
	if err != nil && len(res) == 0 && ctx.Err() != nil {
		return nil, nil, fmt.Errorf("find datasets: %w", err)
	}
	var cands []Candidate
	for _, r := range res {
		d := r.Desc
		if d.Data == nil {
			continue
		}
		p, err := peer.Decode(d.Owner)
		if err != nil {
			continue
		}
		cands = append(cands, Candidate{
			Peer: p, Dataset: d.Name, Samples: d.Data.Samples, Sketch: d.Data.Sketch,
			Age: time.Duration(r.AgeSeconds * float64(time.Second)),
		})
	}
	tres, err := s.desc.Find(fctx, descriptors.Query{Kind: descriptors.KindTestset, Task: spec.Data.Task}, descriptors.FindOptions{})
	if err != nil && len(tres) == 0 && ctx.Err() != nil {
		return nil, nil, fmt.Errorf("find test sets: %w", err)
	}
	var evals []Evaluator
	for _, r := range tres {
		d := r.Desc
		if d.Testset == nil {
			continue
		}
		p, err := peer.Decode(d.Owner)
		if err != nil {
			continue
		}
		evals = append(evals, Evaluator{
			Peer: p, Testset: d.Slot.String(), Samples: d.Testset.Samples,
			Tasks: append([]string{d.Testset.Task}, d.Testset.Tasks...),
		})
	}
	// Reachability: connected now, or a short dial succeeds.
	reach := map[peer.ID]bool{}
	check := func(p peer.ID) bool {
		if v, ok := reach[p]; ok {
			return v
		}
		ok := p == s.h.ID() || s.reachable(ctx, p)
		reach[p] = ok
		return ok
	}
	for i := range cands {
		cands[i].Reachable = check(cands[i].Peer)
	}
	for i := range evals {
		evals[i].Reachable = check(evals[i].Peer)
	}
	return cands, evals, nil
}

func (s *Service) reachable(ctx context.Context, p peer.ID) bool {
	if s.h.Network().Connectedness(p) == network.Connected {
		return true
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ai := peer.AddrInfo{ID: p, Addrs: s.h.Peerstore().Addrs(p)}
	if len(ai.Addrs) == 0 && s.cfg.routing != nil {
		if found, err := s.cfg.routing.FindPeer(dctx, p); err == nil {
			ai = found
		}
	}
	if len(ai.Addrs) == 0 {
		return false
	}
	return s.h.Connect(dctx, ai) == nil
}

// posting is one round task on its way.
type posting struct {
	cand   Candidate
	id     string
	posted time.Time
}

// runRound runs one round of FedAvg and checkpoints its result.
func (s *Service) runRound(ctx context.Context, run *jobRun) (*RoundRecord, error) {
	s.mu.Lock()
	j := run.job
	id, spec, st, round, created := j.ID, j.Spec, j.Settings, j.Round+1, j.Created
	excluded := map[string]string{}
	for k, v := range j.Excluded {
		excluded[k] = v
	}
	mpvu, modelStr, pending := j.Admission.MPVU, j.Model, j.Pending
	s.mu.Unlock()

	// A round the client was in when it stopped is started over: its
	// tasks are withdrawn so their late results are not mixed in.
	for _, tid := range pending {
		_ = s.pool.Cancel(ctx, tid)
		_, _ = s.pool.Collect(ctx, tid)
	}

	start := time.Now()
	rec := &RoundRecord{Round: round, Accuracy: -1, Failed: map[string]string{}, Rejected: map[string]string{}, Evaluator: mpvu.String()}
	cands, _, err := s.discover(ctx, &spec, excluded)
	if err != nil {
		return nil, err
	}
	chosen, spare := s.mapChoose(&spec, created, st, round, cands, excluded)
	rec.Planner = "mtrce"
	if chosen == nil {
		rec.Planner = "builtin"
		all := Choose(cands, 0, st.Seed, round, excluded)
		chosen = Choose(cands, st.Clients, st.Seed, round, excluded)
		spare = nil
		for _, c := range all {
			in := false
			for _, x := range chosen {
				if x.Key() == c.Key() {
					in = true
				}
			}
			if !in {
				spare = append(spare, c)
			}
		}
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("round %d: no reachable data node for task %s (%d known, %d excluded)", round, spec.Data.Task, len(cands), len(excluded))
	}
	root, err := cid.Decode(modelStr)
	if err != nil {
		return nil, fmt.Errorf("round %d: checkpointed model %q: %w", round, modelStr, err)
	}
	global, _, err := s.fetchModel(ctx, root, spec.Model.Arch, "")
	if err != nil {
		return nil, fmt.Errorf("round %d: load global model: %w", round, err)
	}
	gb, _ := learn.Marshal(global)
	rec.ModelBytes = int64(len(gb))
	served0 := s.servedBytes()

	if err := s.pool.JoinPool(Pool); err != nil {
		return nil, fmt.Errorf("round %d: join pool: %w", round, err)
	}
	s.waitTopicPeers(ctx, chosen, 3*time.Second)

	post := func(c Candidate, idx int) (*posting, error) {
		in, err := MarshalRoundTask(&RoundTask{
			Job: id, Round: round, Arch: spec.Model.Arch, Model: modelStr, Dataset: c.Dataset,
			Epochs: st.Epochs, Batch: st.Batch, LR: st.LR, MaxSamples: st.MaxSamples,
			Seed: st.Seed*1_000_003 + uint64(round)*7919 + uint64(idx),
		})
		if err != nil {
			return nil, err
		}
		t, err := s.pool.Post(ctx, taskpool.TaskSpec{
			Pool: Pool, Kind: KindRound, Skill: spec.Data.Task, Input: in,
			Eligible: []peer.ID{c.Peer}, Lease: s.cfg.lease, Deadline: s.cfg.roundTimeout, Policy: taskpool.First,
		})
		if err != nil {
			return nil, fmt.Errorf("post round task to %s: %w", c.Peer, err)
		}
		return &posting{cand: c, id: t.ID, posted: time.Now()}, nil
	}
	var live []*posting
	setPending := func() {
		ids := make([]string, 0, len(live))
		for _, p := range live {
			ids = append(ids, p.id)
		}
		s.mu.Lock()
		run.job.Pending = ids
		_ = s.saveLocked(ctx, run.job)
		s.mu.Unlock()
	}
	for i, c := range chosen {
		p, err := post(c, i)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		live = append(live, p)
	}
	setPending()
	s.emit(Event{Job: id, Type: "info", Round: round, Message: fmt.Sprintf("round %d: model %s sent to %d data nodes", round, short(modelStr), len(chosen))})

	// Wait for every task to finish, fail or lose its node.
	type done struct {
		p   *posting
		res *RoundResult
	}
	var finished []done
	// replace gives a lost node's part to a spare dataset, if any.
	replace := func(p *posting, why string) *posting {
		rec.Failed[p.cand.Peer.String()] = why
		_ = s.pool.Cancel(ctx, p.id)
		_, _ = s.pool.Collect(ctx, p.id)
		if len(spare) == 0 {
			return nil
		}
		c := spare[0]
		spare = spare[1:]
		np, err := post(c, len(chosen)+len(rec.Failed))
		if err != nil {
			return nil
		}
		s.emit(Event{Job: id, Type: "info", Round: round, Message: fmt.Sprintf("%s replaced by %s: %s", short(p.cand.Peer.String()), short(c.Peer.String()), why)})
		return np
	}
	deadline := time.Now().Add(s.cfg.roundTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(live) > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			for _, p := range live {
				rec.Failed[p.cand.Peer.String()] = "round timeout"
				_ = s.pool.Cancel(ctx, p.id)
				_, _ = s.pool.Collect(ctx, p.id)
			}
			live = nil
			break
		}
		var next []*posting
		changed := false
		for _, p := range live {
			stt, err := s.pool.Status(p.id)
			if err != nil {
				changed = true
				if np := replace(p, err.Error()); np != nil {
					next = append(next, np)
				}
				continue
			}
			switch {
			case stt.State == taskpool.StateDone && stt.Result != nil:
				changed = true
				_, _ = s.pool.Collect(ctx, p.id)
				rr, err := UnmarshalRoundResult(stt.Result.Output)
				if err != nil {
					rec.Rejected[p.cand.Peer.String()] = err.Error()
					s.exclude(run, p.cand.Peer, fmt.Sprintf("round %d: bad result: %v", round, err))
					continue
				}
				finished = append(finished, done{p, rr})
			case stt.State.Terminal():
				changed = true
				why := string(stt.State)
				if stt.Result != nil && stt.Result.Error != "" {
					why += ": " + trunc(stt.Result.Error)
				} else if stt.Reason != "" {
					why += ": " + stt.Reason
				}
				_, _ = s.pool.Collect(ctx, p.id)
				rec.Failed[p.cand.Peer.String()] = why
			case stt.State == taskpool.StateOpen && len(stt.History) > 0:
				// Its lease ran out: the node died or stalled. The task was
				// for it alone, so withdraw it and go on without it.
				changed = true
				if np := replace(p, "lease expired"); np != nil {
					next = append(next, np)
				}
			case stt.State == taskpool.StateOpen && time.Since(p.posted) > s.cfg.bidTimeout:
				// No bid although the pool re-announced the posting (a
				// node that joined the topic late sees the re-announcement):
				// give up on this node for the round.
				changed = true
				if np := replace(p, "no bid"); np != nil {
					next = append(next, np)
				}
			default:
				next = append(next, p)
			}
		}
		live = next
		if changed {
			setPending()
		}
	}
	rec.ServedByClient = s.servedBytes() - served0

	// Collect and check the updates; a bad one excludes its sender.
	cstart := time.Now()
	sort.Slice(finished, func(a, b int) bool { return finished[a].p.cand.Key() < finished[b].p.cand.Key() })
	var updates []learn.Update
	var lossSum float64
	for _, d := range finished {
		rec.TrainMs = max(rec.TrainMs, d.res.TrainMs)
		rec.FetchMs = max(rec.FetchMs, d.res.FetchMs)
		// Data nodes also fetch the model from each other, so the
		// bytes they received, not what the client served, are the
		// round's downlink.
		rec.BytesDown += d.res.FetchedBytes
		rec.NodeMs = max(rec.NodeMs, d.res.FetchMs+d.res.TrainMs)
		from := d.p.cand.Peer
		up, _ := cid.Decode(d.res.Update)
		m, fetched, err := s.fetchModel(ctx, up, spec.Model.Arch, from)
		rec.BytesUp += fetched
		// A node's weight in the average is the samples it trained on,
		// which cannot exceed what its signed descriptor says it holds.
		if err == nil && d.p.cand.Samples > 0 && int64(d.res.Samples) > d.p.cand.Samples {
			err = fmt.Errorf("claims %d samples, its dataset descriptor says %d: %w", d.res.Samples, d.p.cand.Samples, learn.ErrWeight)
		}
		if err == nil {
			err = learn.CheckUpdate(global.NumParams(), learn.Update{From: from.String(), Params: m.Params, Weight: float64(d.res.Samples)})
		}
		_ = s.xfer.Unpin(ctx, up)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			why := fmt.Sprintf("round %d: update %s rejected: %v", round, short(d.res.Update), err)
			rec.Rejected[from.String()] = err.Error()
			s.exclude(run, from, why)
			continue
		}
		updates = append(updates, learn.Update{From: from.String(), Params: m.Params, Weight: float64(d.res.Samples)})
		rec.Nodes = append(rec.Nodes, from.String())
		rec.Samples += d.res.Samples
		lossSum += d.res.Loss * float64(d.res.Samples)
	}
	rec.CollectMs = time.Since(cstart).Milliseconds()
	if len(updates) == 0 {
		setNone(s, run, ctx)
		return nil, fmt.Errorf("round %d: no valid update (%d failed, %d rejected)", round, len(rec.Failed), len(rec.Rejected))
	}
	rec.TrainLoss = lossSum / float64(rec.Samples)
	astart := time.Now()
	params, err := learn.Average(global.NumParams(), updates)
	if err != nil {
		return nil, fmt.Errorf("round %d: average: %w", round, err)
	}
	next := &learn.Model{Arch: global.Arch, Params: params}
	nb, err := learn.Marshal(next)
	if err != nil {
		return nil, fmt.Errorf("round %d: encode global model: %w", round, err)
	}
	nroot, err := s.publishModel(ctx, nb)
	if err != nil {
		return nil, fmt.Errorf("round %d: store global model: %w", round, err)
	}
	rec.AggregateMs = time.Since(astart).Milliseconds()
	rec.Model = nroot.String()

	// The MPVU evaluates and signs; anything else is ignored.
	estart := time.Now()
	served1 := s.servedBytes()
	rep, raw, err := s.Evaluate(ctx, mpvu, nroot, spec.Model.Arch, spec.Data.Task)
	rec.EvalMs = time.Since(estart).Milliseconds()
	rec.BytesEval = s.servedBytes() - served1
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Warn("evaluation ignored", "job", id, "round", round, "mpvu", mpvu, "err", err)
		s.emit(Event{Job: id, Type: "ignored", Round: round, Message: "evaluation: " + err.Error()})
	} else {
		rec.Accuracy, rec.Loss, rec.Report = rep.Accuracy, rep.Loss, raw
	}
	rec.FullBytes = 2 * rec.ModelBytes * int64(len(rec.Nodes)+len(rec.Rejected))
	rec.WallMs = time.Since(start).Milliseconds()
	rec.Time = time.Now().UTC()

	s.stats.rounds.Add(1)
	s.stats.accepted.Add(int64(len(rec.Nodes)))
	s.stats.rejected.Add(int64(len(rec.Rejected)))
	s.stats.lost.Add(int64(len(rec.Failed)))
	s.stats.bytes.Add(rec.BytesDown + rec.BytesUp + rec.BytesEval)
	if rec.Accuracy < 0 {
		s.stats.ignored.Add(1)
	}

	// Checkpoint: from here on a restart continues after this round.
	s.mu.Lock()
	j = run.job
	prev := j.Model
	j.Round, j.Model, j.Pending = round, rec.Model, nil
	if rec.Accuracy >= 0 {
		j.Accuracy, j.Loss = rec.Accuracy, rec.Loss
	}
	j.History = append(j.History, *rec)
	err = s.saveLocked(context.Background(), j)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("round %d: checkpoint: %w", round, err)
	}
	if prev != spec.Model.Initial {
		if c, err := cid.Decode(prev); err == nil {
			_ = s.xfer.Unpin(ctx, c)
		}
	}
	s.log.Info("round done", "job", id, "round", round, "accuracy", rec.Accuracy, "loss", rec.Loss,
		"nodes", len(rec.Nodes), "failed", len(rec.Failed), "rejected", len(rec.Rejected), "wall_ms", rec.WallMs)
	return rec, nil
}

func setNone(s *Service, run *jobRun, ctx context.Context) {
	s.mu.Lock()
	run.job.Pending = nil
	_ = s.saveLocked(ctx, run.job)
	s.mu.Unlock()
}

// exclude keeps a misbehaving data node out of the job's later rounds.
func (s *Service) exclude(run *jobRun, p peer.ID, why string) {
	s.mu.Lock()
	if run.job.Excluded == nil {
		run.job.Excluded = map[string]string{}
	}
	run.job.Excluded[p.String()] = why
	_ = s.saveLocked(context.Background(), run.job)
	s.mu.Unlock()
	s.log.Warn("data node excluded", "job", run.job.ID, "peer", p, "why", why)
	s.emit(Event{Job: run.job.ID, Type: "rejected", Message: fmt.Sprintf("%s excluded: %s", p, why)})
}

func (s *Service) servedBytes() int64 {
	st, err := s.xfer.Stats()
	if err != nil {
		return 0
	}
	return st.ServedBytes
}

// waitTopicPeers gives the pool topic's mesh a moment to include the chosen
// nodes, so their postings are not lost to a mesh still forming.
func (s *Service) waitTopicPeers(ctx context.Context, chosen []Candidate, d time.Duration) {
	if s.ps == nil {
		return
	}
	topic := taskpool.TopicName(Pool)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		have := map[peer.ID]bool{}
		for _, p := range s.ps.ListPeers(topic) {
			have[p] = true
		}
		all := true
		for _, c := range chosen {
			if !have[c.Peer] && c.Peer != s.h.ID() {
				all = false
				break
			}
		}
		if all {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func short(s string) string {
	if len(s) > 12 {
		return s[:6] + ".." + s[len(s)-4:]
	}
	return s
}

// publishModel stores a global model and makes it public. It must be
// explicit: with one update in a round, the average is bit-identical to
// that update, so the global model has the same CID as a root this node
// fetched as private (transfer keeps fetched private roots private).
func (s *Service) publishModel(ctx context.Context, b []byte) (cid.Cid, error) {
	root, err := s.xfer.AddBytes(ctx, b)
	if err != nil {
		return cid.Undef, err
	}
	if err := s.xfer.SetPolicy(root, nil); err != nil {
		return cid.Undef, err
	}
	return root, nil
}
