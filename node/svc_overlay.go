package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/overlay"
	"github.com/daitn/daitn/routing"
)

// startOverlay starts the live map: beacons with this node's roles, probes,
// and the map fed from the descriptor service when it runs. Settings come
// from [services.overlay] in config.toml: interval ("10s"), ttl_factor (3),
// min_interval ("1s"), slots (free work slots announced; default 1 for
// data, compute and host nodes, else 0).
func (n *Node) startOverlay(ctx context.Context) error {
	cfg := n.Config()
	set := cfg.Services["overlay"]
	opts := []overlay.Option{overlay.WithLogger(n.Logger()), overlay.WithRoles(cfg.Roles...)}
	if d, ok, err := durationSetting(set, "interval"); err != nil {
		return err
	} else if ok {
		opts = append(opts, overlay.WithInterval(d))
	}
	if d, ok, err := durationSetting(set, "min_interval"); err != nil {
		return err
	} else if ok {
		opts = append(opts, overlay.WithMinInterval(d))
	}
	if v, ok, err := intSetting(set, "ttl_factor"); err != nil {
		return err
	} else if ok {
		opts = append(opts, overlay.WithTTLFactor(int(v)))
	}
	slots := int64(0)
	if cfg.HasRole("data") || cfg.HasRole("compute") || cfg.HasRole("host") {
		slots = 1
	}
	if v, ok, err := intSetting(set, "slots"); err != nil {
		return err
	} else if ok {
		slots = v
	}
	free := overlay.SystemFree(n.DataDir(), slots)
	busy := func() int64 {
		// Services started after the overlay are looked up when sampled.
		if tr, ok := n.service("train").(interface{ Busy() int }); ok {
			return int64(tr.Busy())
		}
		return 0
	}
	load := func() overlay.Load {
		l := overlay.Load{CPU: overlay.SystemCPU(), Jobs: busy()}
		// Queries running and waiting here: Q-IRCE on other peers adds
		// them to this host's expected latency.
		if inf, ok := n.service("infer").(interface{ Load() (int64, int64) }); ok {
			l.Queries, l.Queue = inf.Load()
		}
		return l
	}
	opts = append(opts,
		overlay.WithLoad(load),
		overlay.WithFree(func() overlay.Capacity {
			c := free()
			c.Slots = max(0, c.Slots-busy())
			return c
		}))
	if feed, ok := n.service("descriptors").(descriptorFeed); ok {
		opts = append(opts, overlay.WithItemSource(descSource{feed}))
	} else {
		n.Logger().Info("overlay: no descriptor service to feed the map; peers only")
	}
	svc, err := overlay.New(ctx, n.Host(), n.PubSub(), opts...)
	if err != nil {
		return err
	}
	n.addService("overlay", svc)
	evs := svc.Subscribe(n.Context())
	go func() {
		// Ends when the service closes its subscriptions (node Close).
		for ev := range evs {
			n.Events().Publish(oam.Event{Type: "map." + ev.Type, Data: ev})
		}
	}()
	if n.API() != nil {
		registerOverlayAPI(n, svc)
	}
	return nil
}

// Overlay is the node's live map (nil before start or without services).
func (n *Node) Overlay() *overlay.Service {
	s, _ := n.service("overlay").(*overlay.Service)
	return s
}

func durationSetting(m map[string]any, key string) (time.Duration, bool, error) {
	v, ok := m[key]
	if !ok {
		return 0, false, nil
	}
	s, isStr := v.(string)
	d, err := time.ParseDuration(s)
	if !isStr || err != nil {
		return 0, false, fmt.Errorf("config services.overlay.%s=%v: want a duration like \"10s\"", key, v)
	}
	return d, true, nil
}

func intSetting(m map[string]any, key string) (int64, bool, error) {
	v, ok := m[key]
	if !ok {
		return 0, false, nil
	}
	switch x := v.(type) {
	case int64:
		return x, true, nil
	case int:
		return int64(x), true, nil
	}
	return 0, false, fmt.Errorf("config services.overlay.%s=%v: want a whole number", key, v)
}

// descriptorFeed is what the map needs of the descriptor service.
type descriptorFeed interface {
	Subscribe(ctx context.Context) <-chan descriptors.Event
	Snapshot() []*descriptors.Signed
}

type descSource struct{ d descriptorFeed }

// Items replays the cached descriptors, then follows changes, until ctx ends.
func (s descSource) Items(ctx context.Context) (<-chan overlay.ItemEvent, error) {
	evs := s.d.Subscribe(ctx)
	out := make(chan overlay.ItemEvent, 64)
	send := func(ev overlay.ItemEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(out)
		for _, sd := range s.d.Snapshot() {
			if it := ItemFromDescriptor(sd); it != nil && !send(overlay.ItemEvent{Item: it}) {
				return
			}
		}
		for ev := range evs {
			if ev.Desc == nil {
				continue
			}
			switch ev.Type {
			case descriptors.EventAdded, descriptors.EventUpdated:
				if it := ItemFromDescriptor(ev.Desc); it != nil && !send(overlay.ItemEvent{Item: it}) {
					return
				}
			case descriptors.EventExpired:
				if !send(overlay.ItemEvent{RemovedID: ev.Desc.Slot.String()}) {
					return
				}
			}
		}
	}()
	return out, nil
}

// ItemFromDescriptor copies what the map and planners need out of a signed
// descriptor. The item id is the descriptor's slot, stable across versions,
// so a new version replaces the old in the map. Nil if the owner is not a
// peer ID.
func ItemFromDescriptor(sd *descriptors.Signed) *overlay.Item {
	owner, err := peer.Decode(sd.Owner)
	if err != nil {
		return nil
	}
	it := &overlay.Item{ID: sd.Slot.String(), Kind: overlay.Kind(sd.Kind), Owner: owner, Name: sd.Name,
		Issued: sd.Issued, Expires: sd.Expires}
	price := func(p *descriptors.Price) float64 {
		if p == nil {
			return 0
		}
		return p.Amount
	}
	switch {
	case sd.Data != nil:
		d := sd.Data
		it.Task, it.Modality, it.Samples, it.LabelDist, it.Updated = d.Task, d.Modality, d.Samples, d.LabelDist, d.Updated
		it.Policy = d.Policy.Mode
		it.Price = price(d.Price)
		setSketch(it, d.Sketch)
	case sd.Model != nil:
		m := sd.Model
		it.Task, it.Modality, it.Arch, it.Skills, it.LatencyMs = m.Task, m.Modality, m.Architecture, m.Skills, m.LatencyMs
		it.Accuracy = m.ClaimedAccuracy
		// A verified figure beats the owner's claim.
		for _, e := range m.Evaluations {
			if e.Metric == "accuracy" && e.Value > 0 {
				it.Accuracy = e.Value
			}
		}
		it.Price = price(m.Price)
	case sd.Compute != nil:
		c := sd.Compute
		it.Cores, it.MemoryMB, it.GPUs, it.Roles = c.CPUCores, c.MemoryBytes>>20, len(c.GPUs), c.Roles
		it.Price = price(c.Price)
	case sd.Testset != nil:
		ts := sd.Testset
		it.Task, it.Modality, it.Samples, it.LabelDist, it.Updated = ts.Task, ts.Modality, ts.Samples, ts.LabelDist, ts.Updated
		it.Price = price(ts.Price)
		setSketch(it, ts.Sketch)
	}
	return it
}

// setSketch unpacks a descriptor sketch (K little-endian slots of 2 or 4
// bytes) into the map's form.
func setSketch(it *overlay.Item, sk *descriptors.Sketch) {
	if sk == nil || sk.K <= 0 || sk.K > 1<<14 {
		return
	}
	per := len(sk.Mins) / sk.K
	if per*sk.K != len(sk.Mins) || (per != 2 && per != 4) {
		return
	}
	mins := make([]uint32, sk.K)
	for i := range mins {
		if per == 2 {
			mins[i] = uint32(binary.LittleEndian.Uint16(sk.Mins[2*i:]))
		} else {
			mins[i] = binary.LittleEndian.Uint32(sk.Mins[4*i:])
		}
	}
	it.Sketch, it.SketchAlgo, it.SketchBits = mins, sk.Algo, per*8
}

// MapPlanRequest is the body of POST /v1/map/plan/train: a dry run of the
// planners on the current map.
type MapPlanRequest struct {
	Job routing.JobSpec `json:"job"`
}

// MapPlanResponse is T-FAM's admission, MTRCE's plan and TAG's settings.
type MapPlanResponse = routing.JobDecision

// MapQueryResponse is Q-FAM's admission and Q-IRCE's ranking.
type MapQueryResponse struct {
	Admission  routing.Admission   `json:"admission"`
	Candidates []routing.Candidate `json:"candidates,omitempty"`
}

func registerOverlayAPI(n *Node, svc *overlay.Service) {
	api := n.API()
	api.Handle("GET /v1/map", func(w http.ResponseWriter, r *http.Request) {
		snap := svc.Snapshot()
		q := r.URL.Query()
		if f, ok, err := viewFilter(q.Get("task"), q.Get("skill"), q.Get("labels"), q.Get("max_age"), q.Get("compute")); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		} else if ok {
			snap = snap.View(f)
		}
		oam.WriteJSON(w, http.StatusOK, snap.Document(q.Get("edges") != "0"))
	})
	api.Handle("GET /v1/map/stats", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, svc.Stats())
	})
	api.Handle("GET /v1/map/events", func(w http.ResponseWriter, r *http.Request) {
		evs := svc.Subscribe(r.Context())
		out := make(chan oam.Event)
		go func() {
			defer close(out)
			for ev := range evs {
				select {
				case out <- oam.Event{Type: "map." + ev.Type, Data: ev}:
				case <-r.Context().Done():
					return
				}
			}
		}()
		oam.ServeSSE(w, r, out)
	})
	api.Handle("GET /v1/map/groups", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		gq := overlay.GroupQuery{Task: q.Get("task")}
		var err error
		if gq.Labels, err = overlay.ParseLabels(q.Get("labels")); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		for _, f := range []struct {
			name string
			dst  *int64
		}{{"min_samples", &gq.MinSamples}} {
			if v := q.Get(f.name); v != "" {
				if *f.dst, err = strconv.ParseInt(v, 10, 64); err != nil {
					oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("parameter %s=%q: want a whole number", f.name, v))
					return
				}
			}
		}
		if v := q.Get("limit"); v != "" {
			if gq.Limit, err = strconv.Atoi(v); err != nil || gq.Limit < 1 || gq.Limit > 100 {
				oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("parameter limit=%q: want 1..100", v))
				return
			}
		}
		if v := q.Get("max_age"); v != "" {
			if gq.MaxAge, err = time.ParseDuration(v); err != nil {
				oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("parameter max_age=%q: want a duration like 24h", v))
				return
			}
		}
		for _, e := range q["exclude"] {
			for _, s := range strings.Split(e, ",") {
				p, err := peer.Decode(strings.TrimSpace(s))
				if err != nil {
					oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("parameter exclude=%q: not a peer ID", s))
					return
				}
				gq.Exclude = append(gq.Exclude, p)
			}
		}
		groups, err := svc.Snapshot().Groups(gq)
		if err != nil {
			oam.WriteError(w, http.StatusUnprocessableEntity, err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, groups)
	})
	api.Handle("POST /v1/map/plan/train", func(w http.ResponseWriter, r *http.Request) {
		var req MapPlanRequest
		if err := oam.ReadJSON(r, 1<<20, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		d, err := routing.PlanJob(svc.Snapshot(), req.Job)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, d)
	})
	api.Handle("POST /v1/map/plan/query", func(w http.ResponseWriter, r *http.Request) {
		var q routing.QuerySpec
		if err := oam.ReadJSON(r, 1<<20, &q); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		snap := svc.Snapshot()
		adm, err := routing.QFAM(snap, q)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		resp := MapQueryResponse{Admission: adm}
		if adm.Admit {
			resp.Candidates, _ = routing.QIRCE(snap, q)
		}
		oam.WriteJSON(w, http.StatusOK, resp)
	})
}

// viewFilter builds a per-job view filter from query parameters; ok is
// false when none is given (the whole map).
func viewFilter(task, skill, labels, maxAge, compute string) (overlay.Filter, bool, error) {
	f := overlay.Filter{Task: task, Skill: skill, Compute: compute == "1" || compute == "true"}
	var err error
	if f.Labels, err = overlay.ParseLabels(labels); err != nil {
		return f, false, err
	}
	if maxAge != "" {
		if f.MaxAge, err = time.ParseDuration(maxAge); err != nil {
			return f, false, fmt.Errorf("parameter max_age=%q: want a duration like 24h", maxAge)
		}
	}
	return f, task != "" || skill != "", nil
}
