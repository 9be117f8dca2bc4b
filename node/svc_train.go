package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/train"
)

// startTrain starts the federated training service with the roles of the
// node (data, mpvu; every node is a client) and registers /v1/train/...
// It needs the descriptors, transfer and taskpool services; without them
// the node runs without training.
func (n *Node) startTrain(ctx context.Context) error {
	desc := n.Descriptors()
	xfer := n.Transfer()
	pool := n.Taskpool()
	if desc == nil || xfer == nil || pool == nil {
		n.Logger().Warn("train service not started: it needs the descriptors, transfer and taskpool services",
			"descriptors", desc != nil, "transfer", xfer != nil, "taskpool", pool != nil)
		return nil
	}
	opts := []train.Option{
		train.WithLogger(n.Logger()), train.WithRoles(n.cfg.Roles...), train.WithDataDir(n.DataDir()),
	}
	if d := n.DHT(); d != nil {
		opts = append(opts, train.WithPeerRouting(d))
	}
	if ov := n.Overlay(); ov != nil {
		opts = append(opts, train.WithMap(ov.Snapshot))
	}
	tcfg := n.cfg.Services["train"]
	testset, _ := tcfg["testset"].(string)
	if testset != "" {
		opts = append(opts, train.WithTestset(testset))
	}
	if v, ok := tcfg["testset_limit"].(int64); ok {
		opts = append(opts, train.WithTestsetLimit(int(v)))
	}
	if v, ok := tcfg["lease"].(string); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("config services.train.lease: %w", err)
		}
		opts = append(opts, train.WithLease(d))
	}
	svc, err := train.New(ctx, n.Host(), n.PubSub(), n.Store(), desc, xfer, pool, opts...)
	if err != nil {
		return err
	}
	n.addService("train", svc)
	evs := svc.Subscribe(n.Context())
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for ev := range evs {
			n.Events().Publish(oam.Event{Type: "train." + ev.Type, Time: ev.Time, Data: ev})
		}
	}()
	if n.API() != nil {
		registerTrainAPI(n, svc)
	}
	if reg := n.Registry(); reg != nil {
		registerTrainMetrics(reg, svc)
	}
	return nil
}

func registerTrainMetrics(reg *prometheus.Registry, svc *train.Service) {
	counter := func(name, help string, get func(train.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "daitn_train_" + name, Help: help},
			func() float64 { return float64(get(svc.Stats())) })
	}
	for _, c := range []prometheus.Collector{
		counter("rounds_total", "Training rounds completed as client.", func(s train.Stats) int64 { return s.Rounds }),
		counter("rounds_failed_total", "Training rounds that produced no model.", func(s train.Stats) int64 { return s.RoundsFailed }),
		counter("updates_accepted_total", "Updates averaged.", func(s train.Stats) int64 { return s.UpdatesAccepted }),
		counter("updates_rejected_total", "Updates refused: wrong shape, non-finite, or claimed weight.", func(s train.Stats) int64 { return s.UpdatesRejected }),
		counter("nodes_lost_total", "Round parts lost to expired leases, failures or no bid.", func(s train.Stats) int64 { return s.NodesLost }),
		counter("reports_ignored_total", "Evaluations without a report signed by the chosen MPVU.", func(s train.Stats) int64 { return s.ReportsIgnored }),
		counter("bytes_moved_total", "Model and update bytes moved by rounds this node ran.", func(s train.Stats) int64 { return s.BytesMoved }),
		counter("rounds_trained_total", "Rounds trained as a data node.", func(s train.Stats) int64 { return s.RoundsTrained }),
		counter("evaluations_total", "Models evaluated as an MPVU.", func(s train.Stats) int64 { return s.Evaluations }),
	} {
		_ = reg.Register(c) // a second node in one process re-registers: ignore
	}
}

// Train is the node's training service (nil if it did not start).
func (n *Node) Train() *train.Service {
	s, _ := n.service("train").(*train.Service)
	return s
}

// TrainDatasetRequest is the body of POST /v1/train/datasets: a data
// directory in the MNIST idx format, or a shard of the real MNIST set.
type TrainDatasetRequest struct {
	Dir        string `json:"dir,omitempty"`
	Name       string `json:"name,omitempty"`
	Task       string `json:"task,omitempty"`
	MNISTShard string `json:"mnist_shard,omitempty"` // "K/N", K in 1..N
	NonIID     bool   `json:"non_iid,omitempty"`
}

// ParseShard parses "K/N" with 1 <= K <= N.
func ParseShard(s string) (k, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if ok {
		k, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			n, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || n < 1 || k < 1 || k > n || n > 60000 {
		return 0, 0, fmt.Errorf("mnist shard %q: want K/N with 1 <= K <= N <= 60000, e.g. 3/10", s)
	}
	return k, n, nil
}

func registerTrainAPI(n *Node, svc *train.Service) {
	api := n.API()
	status := func(err error) int {
		switch {
		case errors.Is(err, train.ErrNoJob):
			return http.StatusNotFound
		case errors.Is(err, train.ErrFinished), errors.Is(err, train.ErrNotAdmitted):
			return http.StatusConflict
		case errors.Is(err, train.ErrJobSpec), errors.Is(err, train.ErrNoRole):
			return http.StatusBadRequest
		}
		return http.StatusInternalServerError
	}
	api.Handle("POST /v1/train/jobs", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, train.MaxJobBytes))
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("job spec: %w", err))
			return
		}
		spec, err := train.ParseJobJSON(b)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		j, err := svc.Submit(r.Context(), spec)
		if err != nil {
			code := status(err)
			if strings.Contains(err.Error(), "model.initial") {
				code = http.StatusBadRequest
			}
			oam.WriteError(w, code, err)
			return
		}
		oam.WriteJSON(w, http.StatusCreated, j)
	})
	api.Handle("GET /v1/train/jobs", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, svc.Jobs())
	})
	api.Handle("GET /v1/train/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		j, err := svc.Job(r.PathValue("id"))
		if err != nil {
			oam.WriteError(w, status(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, j)
	})
	api.Handle("GET /v1/train/jobs/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		j, err := svc.Job(id)
		if err != nil {
			oam.WriteError(w, status(err), err)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		in := svc.Subscribe(ctx)
		out := make(chan oam.Event, 64)
		// The current state first, then changes; the stream ends when
		// the job is terminal.
		out <- oam.Event{Type: "job", Data: j}
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer close(out)
			if j.State.Terminal() {
				return
			}
			for ev := range in {
				if ev.Job != id {
					continue
				}
				select {
				case out <- oam.Event{Type: ev.Type, Time: ev.Time, Data: ev}:
				case <-ctx.Done():
					return
				}
				if ev.Type == "state" && ev.State.Terminal() {
					return
				}
			}
		}()
		oam.ServeSSE(w, r, out)
		cancel()
		<-done
	})
	api.Handle("POST /v1/train/jobs/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var err error
		switch a := r.PathValue("action"); a {
		case "pause":
			err = svc.Pause(id)
		case "resume":
			err = svc.Resume(id)
		case "stop":
			err = svc.Stop(id)
		case "set":
			var req train.SetRequest
			if err = oam.ReadJSON(r, 4<<10, &req); err != nil {
				oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("set: %w", err))
				return
			}
			if err = svc.Set(id, req); err != nil && !errors.Is(err, train.ErrNoJob) && !errors.Is(err, train.ErrFinished) {
				oam.WriteError(w, http.StatusBadRequest, err)
				return
			}
		default:
			oam.WriteError(w, http.StatusNotFound, fmt.Errorf("unknown job action %q: want pause, resume, stop or set", a))
			return
		}
		if err != nil {
			oam.WriteError(w, status(err), err)
			return
		}
		j, _ := svc.Job(id)
		oam.WriteJSON(w, http.StatusOK, j)
	})
	api.Handle("GET /v1/train/jobs/{id}/model", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := svc.Model(r.Context(), r.PathValue("id"), &buf); err != nil {
			oam.WriteError(w, status(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		_, _ = w.Write(buf.Bytes())
	})
	api.Handle("GET /v1/train/datasets", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, svc.Datasets())
	})
	api.Handle("POST /v1/train/datasets", func(w http.ResponseWriter, r *http.Request) {
		var req TrainDatasetRequest
		if err := oam.ReadJSON(r, 4<<10, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		var info train.DatasetInfo
		var err error
		switch {
		case req.MNISTShard != "" && req.Dir != "":
			err = errors.New("give either dir or mnist_shard, not both")
		case req.MNISTShard != "":
			k, nn, perr := ParseShard(req.MNISTShard)
			if perr != nil {
				err = perr
				break
			}
			info, err = svc.AddMNISTShard(r.Context(), k, nn, req.NonIID)
		case req.Dir != "":
			name := req.Name
			if name == "" {
				name = lastElem(req.Dir)
			}
			info, err = svc.AddDataset(r.Context(), name, req.Dir, req.Task)
		default:
			err = errors.New("give dir (an MNIST idx directory) or mnist_shard (K/N)")
		}
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		oam.WriteJSON(w, http.StatusCreated, info)
	})
}

func lastElem(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
