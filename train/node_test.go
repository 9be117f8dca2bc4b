package train_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/train"
)

// TestNodeAPI drives training through whole nodes as `daitn up` starts them
// (every service wired by the node) and their control API, as the CLI does.
func TestNodeAPI(t *testing.T) {
	roles := [][]string{{"mpvu"}, {"data"}, {"data"}, {"client"}}
	nodes := nodetest.Start(t, len(roles), nodetest.WithConfig(func(i int, c *node.Config) {
		c.Roles = roles[i]
		c.Services = map[string]map[string]any{"train": {"testset_limit": int64(2000), "lease": "3s"}}
	}))
	for i, nd := range nodes {
		if nd.Train() == nil {
			t.Fatalf("node %d has no train service", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	api := func(i int) *oam.Client {
		c, err := oam.Dial(nodes[i].DataDir())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	set := mnistTrainSet(t)
	for i := 1; i <= 2; i++ {
		dir := filepath.Join(nodes[i].DataDir(), "shard")
		if err := train.WriteMNISTShard(set, dir, i, 60, false, 1); err != nil {
			t.Fatal(err)
		}
		var info train.DatasetInfo
		if err := api(i).Call(ctx, http.MethodPost, "/v1/train/datasets", node.TrainDatasetRequest{Dir: dir, Name: "shard"}, &info); err != nil {
			t.Fatal(err)
		}
		if info.Samples != 1000 {
			t.Fatalf("dataset %+v, want 1000 samples", info)
		}
	}
	// A client node without the data role cannot add datasets.
	var apiErr *oam.APIError
	if err := api(3).Call(ctx, http.MethodPost, "/v1/train/datasets", node.TrainDatasetRequest{Dir: "/nonexistent"}, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("dataset on a client: %v", err)
	}
	if err := api(1).Call(ctx, http.MethodPost, "/v1/train/datasets", node.TrainDatasetRequest{MNISTShard: "11/10"}, nil); err == nil {
		t.Fatal("shard 11/10 accepted")
	}

	client := api(3)
	spec := baseSpec()
	spec.Target.Accuracy = 0.80
	spec.Data.MinDatasets = 2
	spec.Settings.Clients = 2
	var job train.Job
	var lastErr error
	deadline := time.Now().Add(60 * time.Second)
	for {
		lastErr = client.Call(ctx, http.MethodPost, "/v1/train/jobs", spec, &job)
		if lastErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not admitted in 60s: %v", lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Malformed specs are refused with the key named.
	bad := map[string]any{"model": map[string]any{"arch": "mnist-2nn"}, "target": map[string]any{"accuracy": 2}, "data": map[string]any{"task": "x"}}
	if err := client.Call(ctx, http.MethodPost, "/v1/train/jobs", bad, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("bad spec: %v", err)
	}
	var rounds int
	err := client.Stream(ctx, "/v1/train/jobs/"+job.ID+"/events", func(ev oam.Event) error {
		raw, _ := ev.Data.(json.RawMessage)
		var e train.Event
		_ = json.Unmarshal(raw, &e)
		switch {
		case ev.Type == "round":
			rounds++
		case ev.Type == "state" && e.State.Terminal():
			return errEnd
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnd) {
		t.Fatal(err)
	}
	var got train.Job
	if err := client.Call(ctx, http.MethodGet, "/v1/train/jobs/"+job.ID, nil, &got); err != nil {
		t.Fatal(err)
	}
	if got.State != train.StateDone || got.Accuracy < 0.80 || rounds != got.Round {
		t.Fatalf("job %s %s (%s) accuracy %.4f, %d round events for %d rounds", got.ID, got.State, got.Reason, got.Accuracy, rounds, got.Round)
	}
	// With the node's live map, rounds are planned by routing.MTRCE.
	if p := got.History[0].Planner; p != "mtrce" {
		t.Errorf("round 1 planned by %q, want mtrce on the live map", p)
	}
	resp, err := client.Do(ctx, http.MethodGet, "/v1/train/jobs/"+job.ID+"/model", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, learn.MaxModelBytes))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := learn.Unmarshal(b); err != nil || m.Arch.Name != "mnist-2nn" {
		t.Fatalf("model from the API: %v", err)
	}
	if err := client.Call(ctx, http.MethodPost, "/v1/train/jobs/"+job.ID+"/pause", nil, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Fatalf("pause of a finished job: %v, want 409", err)
	}
	if err := client.Call(ctx, http.MethodGet, "/v1/train/jobs/nope", nil, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("unknown job: %v, want 404", err)
	}
}

var errEnd = errors.New("end")
