package infer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/png"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/infer"
	"github.com/daitn/daitn/learn"
	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/routing"
)

const skill = "classify-digits"

// federation starts n whole nodes on loopback. Beacons every 2s (a peer
// leaves a map 6s after its last one); hosts run one query at a time with
// no queue, so a held slot makes them busy.
func federation(t *testing.T, n int) []*nodetest.Node {
	t.Helper()
	return nodetest.Start(t, n, nodetest.WithConfig(func(i int, c *node.Config) {
		c.Services = map[string]map[string]any{
			"overlay": {"interval": "2s"},
			"infer":   {"max_in_flight": int64(1), "queue": int64(0)},
		}
	}))
}

// host stores weights in nd's transfer store and publishes a model
// descriptor pointing at them; it returns the descriptor's slot id.
func host(t *testing.T, nd *nodetest.Node, name string, acc float64, weights []byte) string {
	t.Helper()
	ctx := context.Background()
	root, err := nd.Transfer().AddBytes(ctx, weights)
	if err != nil {
		t.Fatal(err)
	}
	return publish(t, nd, name, acc, root.String())
}

func publish(t *testing.T, nd *nodetest.Node, name string, acc float64, root string) string {
	t.Helper()
	sd, err := nd.Descriptors().Publish(context.Background(), &descriptors.Descriptor{
		Header: descriptors.Header{Kind: descriptors.KindModel, Name: name},
		Model: &descriptors.Model{Version: "1", Architecture: learn.MNIST2NN, Skills: []string{skill},
			ClaimedAccuracy: acc, LatencyMs: 1, WeightsRoot: root},
	})
	if err != nil {
		t.Fatal(err)
	}
	return sd.Slot.String()
}

// waitEligible waits until the client's map admits the query with want
// models.
func waitEligible(t *testing.T, client *nodetest.Node, want int) {
	t.Helper()
	nodetest.Eventually(t, 30*time.Second, "models in the client's map", func() bool {
		adm, err := routing.QFAM(client.Overlay().Snapshot(), routing.QuerySpec{Skill: skill})
		return err == nil && len(adm.Eligible) >= want
	})
}

func pngDigit(t *testing.T, x []float32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := infer.EncodePNG(&b, x); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A client asks by skill for real MNIST test digits it sends as PNG; the
// host it never named answers, with the same classes the model gives in
// process, well above chance.
func TestQueryBySkillClassifiesMNIST(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := federation(t, 3)
	h, client := nodes[1], nodes[2]
	slot := host(t, h, "digits-2nn", 0.9, weights)
	waitEligible(t, client, 1)

	local, err := learn.Unmarshal(weights)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := 60
	if testing.Short() {
		n = 30
	}
	correct := 0
	for i := 0; i < n; i++ {
		x := test.X[i*784 : (i+1)*784]
		res, err := client.Infer().Query(ctx, routing.QuerySpec{Skill: skill, MinAccuracy: 0.8}, pngDigit(t, x))
		if err != nil {
			t.Fatalf("digit %d: %v", i, err)
		}
		want, _, _ := local.Predict(x)
		if res.Class != want {
			t.Fatalf("digit %d: host says %d, the model in process says %d", i, res.Class, want)
		}
		if res.Host != h.ID() || res.Model != slot || len(res.Tried) != 1 || res.Confidence != res.Probs[res.Class] {
			t.Fatalf("digit %d: answered by %s model %s after %d attempts, want %s %s after 1", i, res.Host, res.Model, len(res.Tried), h.ID(), slot)
		}
		if int(test.Y[i]) == res.Class {
			correct++
		}
	}
	if acc := float64(correct) / float64(n); acc < 0.8 {
		t.Fatalf("%d of %d digits right (%.2f), want > 0.8 (chance is 0.1)", correct, n, acc)
	}
	if st := h.Infer().Stats(); st.Served != int64(n) || st.Loaded != 1 {
		t.Fatalf("host stats %+v, want %d served and 1 model loaded", st, n)
	}
}

// Two hosts offer the skill; the better one answers until it stops, then
// the client, whose map still lists it, fails over to the other.
func TestFailoverWhenBestHostStops(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := federation(t, 4)
	best, other, client := nodes[1], nodes[2], nodes[3]
	host(t, best, "digits-best", 0.99, weights)
	host(t, other, "digits-other", 0.9, weights)
	waitEligible(t, client, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	in := pngDigit(t, test.X[:784])

	res, err := client.Infer().Query(ctx, routing.QuerySpec{Skill: skill}, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Host != best.ID() {
		t.Fatalf("answered by %s, want the more accurate host %s", res.Host, best.ID())
	}
	best.Kill()
	res, err = client.Infer().Query(ctx, routing.QuerySpec{Skill: skill}, in)
	if err != nil {
		t.Fatalf("query after the best host stopped: %v", err)
	}
	if res.Host != other.ID() || res.Class != int(test.Y[0]) {
		t.Fatalf("answered by %s with %d, want %s with %d", res.Host, res.Class, other.ID(), test.Y[0])
	}
	if len(res.Tried) != 2 || res.Tried[0].Host != best.ID() || res.Tried[0].Status != infer.StatusError || res.Tried[0].Error == "" {
		t.Fatalf("attempts %+v, want the stopped host first with its error, then %s", res.Tried, other.ID())
	}
}

// rawQuery sends bytes as one frame of the protocol from h's host, as a
// hostile or broken peer would, and returns the answer.
func rawQuery(t *testing.T, from, to *nodetest.Node, announce int, body []byte) *infer.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := from.Host().NewStream(ctx, to.ID(), infer.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		var hdr [binary.MaxVarintLen64]byte
		n := binary.PutUvarint(hdr[:], uint64(announce))
		_, _ = st.Write(append(hdr[:n:n], body...))
		_ = st.CloseWrite()
	}()
	br := bufio.NewReader(st)
	size, err := binary.ReadUvarint(br)
	if err != nil || size > infer.MaxResponseBytes {
		t.Fatalf("no answer frame: %v (size %d)", err, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatal(err)
	}
	resp, err := infer.UnmarshalResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Bad requests get clear errors naming what is wrong, are not retried on
// other hosts, and the host goes on serving.
func TestBadInputAndMissingWeights(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := federation(t, 3)
	h, client := nodes[1], nodes[2]
	host(t, h, "digits-2nn", 0.9, weights)
	// A model whose weights only the client holds: the host must not
	// fetch them on a client's behalf.
	elsewhere, err := client.Transfer().AddBytes(context.Background(), append([]byte(nil), weights[:len(weights)-4]...))
	if err != nil {
		t.Fatal(err)
	}
	ghost := publish(t, h, "digits-ghost", 0.5, elsewhere.String())
	waitEligible(t, client, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := func(spec routing.QuerySpec, in []byte) error {
		_, err := client.Infer().Query(ctx, spec, in)
		return err
	}
	var big bytes.Buffer
	_ = png.Encode(&big, image.NewGray(image.Rect(0, 0, 32, 32)))
	for _, tc := range []struct {
		name string
		err  error
		is   error
		want string
	}{
		{"wrong image size", q(routing.QuerySpec{Skill: skill, MinAccuracy: 0.8}, big.Bytes()), infer.ErrBadInput, "32x32 pixels, want 28x28"},
		{"garbage", q(routing.QuerySpec{Skill: skill, MinAccuracy: 0.8}, []byte("these are not pixels")), infer.ErrBadInput, "not an image"},
		{"oversized", q(routing.QuerySpec{Skill: skill}, make([]byte, infer.MaxInputBytes+1)), infer.ErrBadInput, "at most 1048576"},
		{"unknown skill", q(routing.QuerySpec{Skill: "translate-klingon"}, pngDigit(t, test.X[:784])), infer.ErrNoModel, `no model in the map serves skill "translate-klingon"`},
		{"accuracy out of reach", q(routing.QuerySpec{Skill: skill, MinAccuracy: 0.999}, pngDigit(t, test.X[:784])), infer.ErrNoModel, "below 0.999"},
	} {
		if !errors.Is(tc.err, tc.is) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %v naming %q", tc.name, tc.err, tc.is, tc.want)
		}
		var qe *infer.QueryError
		if errors.As(tc.err, &qe) && len(qe.Tried) != 1 {
			t.Errorf("%s: %d hosts tried, want 1 (bad input is not retried)", tc.name, len(qe.Tried))
		}
	}
	_, err = client.Infer().QueryModel(ctx, ghost, pngDigit(t, test.X[:784]))
	if !errors.Is(err, infer.ErrUnavailable) || !strings.Contains(err.Error(), "not stored on this host") {
		t.Errorf("model without weights: %v, want ErrUnavailable saying the weights are not stored", err)
	}
	// Frames from a broken or hostile peer: oversized and undecodable.
	resp := rawQuery(t, client, h, 2<<20, make([]byte, 64<<10))
	if resp.Status != infer.StatusBadInput || !strings.Contains(resp.Error, "at most") {
		t.Errorf("oversized frame: %+v", resp)
	}
	resp = rawQuery(t, client, h, 5, []byte{0xff, 0x00, 0x13, 0x37, 0x42})
	if resp.Status != infer.StatusBadInput || !strings.Contains(resp.Error, "decode request") {
		t.Errorf("garbage frame: %+v", resp)
	}

	// The same through the control API, with the HTTP status a program
	// acts on.
	api, err := oam.Dial(client.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		req    node.InferRequest
		status int
		want   string
	}{
		{"unknown skill", node.InferRequest{Skill: "translate-klingon", Input: pngDigit(t, test.X[:784])}, 422, "translate-klingon"},
		{"wrong image size", node.InferRequest{Skill: skill, MinAccuracy: 0.8, Input: big.Bytes()}, 400, "want 28x28"},
		{"neither skill nor model", node.InferRequest{Input: big.Bytes()}, 400, "give skill"},
		{"bad latency", node.InferRequest{Skill: skill, MaxLatency: "soon", Input: big.Bytes()}, 400, "max_latency"},
		{"body over the limit", node.InferRequest{Skill: skill, Input: make([]byte, 3*infer.MaxInputBytes/2)}, 400, "at most 1048576"},
	} {
		err := api.Call(ctx, "POST", "/v1/infer", tc.req, nil)
		var ae *oam.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("API %s: %v, want %d naming %q", tc.name, err, tc.status, tc.want)
		}
	}

	// The host is still serving.
	res, err := client.Infer().Query(ctx, routing.QuerySpec{Skill: skill, MinAccuracy: 0.8}, pngDigit(t, test.X[:784]))
	if err != nil || res.Class != int(test.Y[0]) {
		t.Fatalf("query after the bad ones: %v, %+v", err, res)
	}
	var viaAPI node.InferResponse
	if err := api.Call(ctx, "POST", "/v1/infer", node.InferRequest{Skill: skill, Input: pngDigit(t, test.X[:784])}, &viaAPI); err != nil ||
		viaAPI.Class != int(test.Y[0]) || viaAPI.Host != h.ID() {
		t.Fatalf("query through the API: %v, %+v", err, viaAPI)
	}
	if st := h.Infer().Stats(); st.BadInput < 5 || st.Unavailable != 1 || st.Served != 2 {
		t.Fatalf("host stats %+v, want >= 5 bad inputs, 1 unavailable, 2 served", st)
	}
}

// A host whose slots are all taken answers busy at once; the client fails
// over, and when every host is busy says so. The busy host's beacon carries
// its load to the client's map.
func TestBusyHostsFailOverAndReportLoad(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := federation(t, 4)
	a, b, client := nodes[1], nodes[2], nodes[3]
	host(t, a, "digits-a", 0.99, weights)
	host(t, b, "digits-b", 0.9, weights)
	waitEligible(t, client, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	in := pngDigit(t, test.X[:784])
	spec := routing.QuerySpec{Skill: skill}

	releaseA := a.Infer().HoldSlots(1)
	res, err := client.Infer().Query(ctx, spec, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Host != b.ID() || len(res.Tried) != 2 || res.Tried[0].Host != a.ID() || res.Tried[0].Status != infer.StatusBusy {
		t.Fatalf("answered by %s after %+v, want a busy %s then %s", res.Host, res.Tried, a.ID(), b.ID())
	}
	if q, _ := a.Infer().Load(); q != 1 {
		t.Fatalf("busy host reports %d queries in flight, want 1", q)
	}
	nodetest.Eventually(t, 20*time.Second, "the busy host's load in the client's map", func() bool {
		p := client.Overlay().Snapshot().Peer(a.ID())
		return p != nil && p.Load.Queries == 1
	})

	releaseB := b.Infer().HoldSlots(1)
	_, err = client.Infer().Query(ctx, spec, in)
	var qe *infer.QueryError
	if !errors.Is(err, infer.ErrBusy) || !errors.As(err, &qe) || len(qe.Tried) != 2 {
		t.Fatalf("every host busy: %v, want ErrBusy after trying both", err)
	}
	for _, at := range qe.Tried {
		if at.Status != infer.StatusBusy || !strings.Contains(at.Error, "host busy") {
			t.Fatalf("attempt %+v, want a busy answer saying so", at)
		}
	}
	releaseA()
	releaseB()

	// Real contention: many clients at once against one slot. Every answer
	// is a prediction or a clear busy, never anything else.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, busy := 0, 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.Infer().Ask(ctx, a.ID(), "", skill, in)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, infer.ErrBusy):
				busy++
			default:
				t.Errorf("concurrent query: %v, want an answer or busy", err)
			}
		}()
	}
	wg.Wait()
	if ok == 0 {
		t.Fatalf("no concurrent query answered (%d busy)", busy)
	}
	t.Logf("16 concurrent queries on one slot: %d answered, %d busy", ok, busy)
}

// The host keeps at most max_loaded models in memory and still answers for
// every model; a half-sent request does not take the query slot; Close
// resets it and returns without waiting for its read deadline.
func TestCacheBoundAndClose(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := nodetest.Start(t, 2, nodetest.WithConfig(func(i int, c *node.Config) {
		c.Services = map[string]map[string]any{"infer": {"max_loaded": int64(2), "max_in_flight": int64(1), "queue": int64(0)}}
	}))
	h, client := nodes[0], nodes[1]
	var slots []string
	for _, name := range []string{"m1", "m2", "m3"} {
		slots = append(slots, host(t, h, name, 0.9, weights))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := pngDigit(t, test.X[:784])
	for round := 0; round < 2; round++ {
		for _, slot := range slots {
			res, err := client.Infer().Ask(ctx, h.ID(), slot, "", in)
			if err != nil || res.Model != slot || res.Class != int(test.Y[0]) {
				t.Fatalf("ask model %s: %v %+v", slot, err, res)
			}
			if n := h.Infer().Stats().Loaded; n > 2 {
				t.Fatalf("%d models loaded, the limit is 2", n)
			}
		}
	}

	st, err := client.Host().NewStream(ctx, h.ID(), infer.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{0x80, 0x10, 0xa1}); err != nil { // announces 2048 bytes, sends 1
		t.Fatal(err)
	}
	nodetest.Eventually(t, 5*time.Second, "the half-sent query open on the host", func() bool {
		for _, c := range h.Host().Network().ConnsToPeer(client.ID()) {
			for _, s := range c.GetStreams() {
				if s.Protocol() == infer.ProtocolID {
					return true
				}
			}
		}
		return false
	})
	// A peer trickling its request holds a stream, not a query slot: the
	// host's only slot still answers others.
	if _, err := client.Infer().Ask(ctx, h.ID(), slots[0], "", in); err != nil {
		t.Fatalf("query while a request trickles in: %v", err)
	}
	t0 := time.Now()
	if err := h.Infer().Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("Close took %v with a query stream open; it must not wait for the read deadline", d)
	}
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Read(make([]byte, 1)); err == nil {
		t.Fatal("the half-sent query got an answer after Close, want a reset")
	}
	if _, err := client.Infer().Ask(ctx, h.ID(), slots[0], "", in); err == nil {
		t.Fatal("a closed service answered")
	}
}
