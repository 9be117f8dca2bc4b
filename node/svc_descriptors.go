package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/daitn/daitn/descriptors"
	"github.com/daitn/daitn/descriptors/facts"
	"github.com/daitn/daitn/oam"
)

// startDescriptors starts the descriptor service (publish, DHT + gossip
// discovery, republish, data watch) and registers its API routes:
//
//	POST /v1/descriptors              publish (a descriptor, or a data path to measure)
//	POST /v1/descriptors/update       re-measure and republish a data descriptor
//	GET  /v1/descriptors/stats        counters (also as Prometheus metrics)
//	GET  /v1/descriptors              own descriptors (?all=1: everything known)
//	GET  /v1/descriptors/{id}         one descriptor by slot or version id (?a2a=1: Agent Card)
//	DELETE /v1/descriptors/{id}       stop publishing one of ours
//	GET  /v1/descriptors/{id}/reveal  a reveal of a sealed field of ours (?field=)
//	POST /v1/descriptors/verify       check a reveal against the descriptor it opens
//	GET  /v1/find                     search (kind, task, skill, modality, role, name,
//	                                  min_samples, max_age, owner, source=gossip|dht|both)
//
// Settings come from [services.descriptors] in config.toml: ttl ("24h"),
// watch_interval ("10s"), find_timeout ("10s"), resync_interval ("5m").
func (n *Node) startDescriptors(ctx context.Context) error {
	var rt routing.Routing
	if d := n.DHT(); d != nil {
		rt = d
	}
	opts := []descriptors.Option{
		descriptors.WithLogger(n.Logger()),
		descriptors.WithPrivKey(n.PrivKey()),
	}
	conf := n.Config().Services["descriptors"]
	for key, o := range map[string]func(time.Duration) descriptors.Option{
		"ttl":             descriptors.WithTTL,
		"watch_interval":  descriptors.WithWatchInterval,
		"find_timeout":    descriptors.WithFindTimeout,
		"resync_interval": descriptors.WithResyncInterval,
	} {
		v, ok := conf[key]
		if !ok {
			continue
		}
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("config services.descriptors.%s = %v: want a duration like \"24h\"", key, v)
		}
		opts = append(opts, o(d))
	}
	svc, err := descriptors.New(ctx, n.Host(), n.PubSub(), rt, n.Store(), opts...)
	if err != nil {
		return err
	}
	n.addService("descriptors", svc)
	// Forward descriptor changes to the node's event bus; the goroutine ends
	// when the service closes its subscription channel.
	evs := svc.Subscribe(context.Background())
	go func() {
		for ev := range evs {
			n.Events().Publish(oam.Event{Type: "descriptor." + string(ev.Type), Data: DescriptorSummaryOf(ev.Desc, ev.Source)})
		}
	}()
	if n.API() != nil {
		registerDescriptorAPI(n, svc)
	}
	if reg := n.Registry(); reg != nil {
		registerDescriptorMetrics(reg, svc)
	}
	return nil
}

func registerDescriptorMetrics(reg *prometheus.Registry, svc *descriptors.Service) {
	gauge := func(name, help string, get func(descriptors.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "daitn_descriptors_" + name, Help: help},
			func() float64 { return get(svc.Stats()) })
	}
	counter := func(name, help string, get func(descriptors.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "daitn_descriptors_" + name, Help: help},
			func() float64 { return float64(get(svc.Stats())) })
	}
	for _, c := range []prometheus.Collector{
		gauge("known", "Live descriptors known (own and heard).", func(s descriptors.Stats) float64 { return float64(s.Known) }),
		gauge("own", "Descriptors this node publishes.", func(s descriptors.Stats) float64 { return float64(s.Own) }),
		counter("gossip_accepted_total", "New descriptor versions accepted from gossip.", func(s descriptors.Stats) int64 { return s.GossipAccepted }),
		counter("gossip_rejected_total", "Gossiped descriptors rejected as forged, tampered, oversized or wrongly typed.", func(s descriptors.Stats) int64 { return s.GossipRejected }),
		counter("gossip_ignored_total", "Gossiped descriptors ignored as stale or duplicate.", func(s descriptors.Stats) int64 { return s.GossipIgnored }),
		counter("dht_puts_total", "Descriptor and index records put into the DHT.", func(s descriptors.Stats) int64 { return s.DHTPuts }),
		counter("dht_put_errors_total", "DHT puts that failed.", func(s descriptors.Stats) int64 { return s.DHTPutErrors }),
		counter("finds_total", "Find calls.", func(s descriptors.Stats) int64 { return s.Finds }),
		counter("synced_total", "Descriptors learnt from catch-up syncs.", func(s descriptors.Stats) int64 { return s.Synced }),
	} {
		_ = reg.Register(c) // a second node in one process re-registers: ignore
	}
}

// Descriptors is the node's descriptor service (nil before start).
func (n *Node) Descriptors() *descriptors.Service {
	s, _ := n.service("descriptors").(*descriptors.Service)
	return s
}

// descriptorRecordValidator validates /daitn/d/... DHT records: signature,
// payload type, size, expiry, slot key; newest version wins.
func descriptorRecordValidator() record.Validator { return descriptors.RecordValidator{} }

// DescriptorSummary is the short form in events and lists.
type DescriptorSummary struct {
	ID     string           `json:"id"`
	Slot   string           `json:"slot"`
	Kind   descriptors.Kind `json:"kind"`
	Name   string           `json:"name"`
	Owner  string           `json:"owner"`
	Seq    uint64           `json:"seq"`
	Source string           `json:"source,omitempty"`
}

// DescriptorSummaryOf summarises s (nil-safe).
func DescriptorSummaryOf(s *descriptors.Signed, src descriptors.Source) *DescriptorSummary {
	if s == nil {
		return nil
	}
	return &DescriptorSummary{ID: s.ID.String(), Slot: s.Slot.String(), Kind: s.Kind, Name: s.Name, Owner: s.Owner, Seq: s.Seq, Source: string(src)}
}

// PublishRequest is the body of POST /v1/descriptors. Either Descriptor is
// published as given, or Path (a data directory or file on the node's
// machine) is measured and published as a data descriptor with Descriptor
// as the template for what cannot be measured (name, task, modality, policy,
// price), and then watched for changes.
type PublishRequest struct {
	Descriptor  *descriptors.Descriptor `json:"descriptor"`
	Path        string                  `json:"path,omitempty"`
	Format      string                  `json:"format,omitempty"`
	LabelColumn string                  `json:"label_column,omitempty"`
	Seal        []string                `json:"seal,omitempty"`
}

// UpdateRequest is the body of POST /v1/descriptors/update.
type UpdateRequest struct {
	Name string `json:"name"`
}

// VerifyRevealResponse is the answer of POST /v1/descriptors/verify.
type VerifyRevealResponse struct {
	OK         bool                    `json:"ok"`
	Descriptor *descriptors.Descriptor `json:"descriptor"`
}

func descriptorStatus(err error) int {
	switch {
	case errors.Is(err, descriptors.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, descriptors.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

func registerDescriptorAPI(n *Node, svc *descriptors.Service) {
	api := n.API()
	api.Handle("POST /v1/descriptors", func(w http.ResponseWriter, r *http.Request) {
		var req PublishRequest
		if err := oam.ReadJSON(r, descriptors.MaxEnvelopeSize*4, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		var sd *descriptors.Signed
		var err error
		opts := []descriptors.PublishOption{}
		if len(req.Seal) > 0 {
			opts = append(opts, descriptors.WithSealed(req.Seal...))
		}
		if req.Path != "" {
			sd, err = svc.PublishData(r.Context(), req.Path, req.Descriptor, facts.Options{Format: req.Format, LabelColumn: req.LabelColumn}, opts...)
		} else if req.Descriptor == nil {
			err = errors.New("request needs \"descriptor\" (a descriptor to publish) or \"path\" (data to measure)")
		} else {
			sd, err = svc.Publish(r.Context(), req.Descriptor, opts...)
		}
		if err != nil {
			oam.WriteError(w, descriptorStatus(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, sd)
	})
	api.Handle("POST /v1/descriptors/update", func(w http.ResponseWriter, r *http.Request) {
		var req UpdateRequest
		if err := oam.ReadJSON(r, 4096, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		sd, err := svc.UpdateData(r.Context(), req.Name)
		if err != nil {
			oam.WriteError(w, descriptorStatus(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, sd)
	})
	api.Handle("GET /v1/descriptors/stats", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, svc.Stats())
	})
	api.Handle("GET /v1/descriptors", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("all") != "" {
			oam.WriteJSON(w, http.StatusOK, svc.Snapshot())
			return
		}
		oam.WriteJSON(w, http.StatusOK, svc.Own())
	})
	api.Handle("GET /v1/descriptors/{id}", func(w http.ResponseWriter, r *http.Request) {
		sd, ok := lookupDescriptor(svc, w, r)
		if !ok {
			return
		}
		if r.URL.Query().Get("a2a") != "" {
			card, err := descriptors.AgentCardOf(sd)
			if err != nil {
				oam.WriteError(w, http.StatusBadRequest, err)
				return
			}
			oam.WriteJSON(w, http.StatusOK, card)
			return
		}
		oam.WriteJSON(w, http.StatusOK, sd)
	})
	api.Handle("DELETE /v1/descriptors/{id}", func(w http.ResponseWriter, r *http.Request) {
		sd, ok := lookupDescriptor(svc, w, r)
		if !ok {
			return
		}
		if err := svc.Remove(r.Context(), sd.Slot); err != nil {
			oam.WriteError(w, descriptorStatus(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, DescriptorSummaryOf(sd, descriptors.SourceLocal))
	})
	api.Handle("GET /v1/descriptors/{id}/reveal", func(w http.ResponseWriter, r *http.Request) {
		sd, ok := lookupDescriptor(svc, w, r)
		if !ok {
			return
		}
		rv, err := svc.Reveal(sd.Slot, r.URL.Query().Get("field"))
		if err != nil {
			oam.WriteError(w, descriptorStatus(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, rv)
	})
	api.Handle("POST /v1/descriptors/verify", func(w http.ResponseWriter, r *http.Request) {
		var rv descriptors.Reveal
		if err := oam.ReadJSON(r, descriptors.MaxRevealSize*2, &rv); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		slot, err := cid.Decode(rv.Slot)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("reveal slot %q is not a CID", rv.Slot))
			return
		}
		sd, err := svc.Get(r.Context(), slot)
		if err != nil {
			oam.WriteError(w, descriptorStatus(err), err)
			return
		}
		d, err := descriptors.VerifyReveal(sd, rv)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, VerifyRevealResponse{OK: true, Descriptor: d})
	})
	api.Handle("GET /v1/find", func(w http.ResponseWriter, r *http.Request) {
		q, fo, err := ParseFindQuery(r.URL.Query())
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		res, err := svc.Find(r.Context(), q, fo)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			oam.WriteError(w, descriptorStatus(err), err)
			return
		}
		if res == nil {
			res = []descriptors.Result{}
		}
		oam.WriteJSON(w, http.StatusOK, res)
	})
}

// ParseFindQuery reads /v1/find parameters. Unknown parameters are errors,
// so a typo does not silently widen a search.
func ParseFindQuery(v map[string][]string) (descriptors.Query, descriptors.FindOptions, error) {
	var q descriptors.Query
	var fo descriptors.FindOptions
	for key, vals := range v {
		val := ""
		if len(vals) > 0 {
			val = vals[len(vals)-1]
		}
		switch key {
		case "kind":
			q.Kind = descriptors.Kind(val)
		case "task":
			q.Task = val
		case "skill":
			q.Skill = val
		case "modality":
			q.Modality = val
		case "role":
			q.Role = val
		case "name":
			q.Name = val
		case "owner":
			q.Owner = val
		case "min_samples":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return q, fo, fmt.Errorf("min_samples = %q: want a whole number >= 0", val)
			}
			q.MinSamples = n
		case "max_age":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return q, fo, fmt.Errorf("max_age = %q: want a duration like 1h or 30m", val)
			}
			q.MaxAge = d
		case "timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return q, fo, fmt.Errorf("timeout = %q: want a duration like 5s", val)
			}
			fo.Timeout = d
		case "source":
			switch strings.ToLower(val) {
			case "gossip", "cache":
				fo.UseGossip = true
			case "dht":
				fo.UseDHT = true
			case "", "both", "all":
				fo.UseGossip, fo.UseDHT = true, true
			default:
				return q, fo, fmt.Errorf("source = %q: want gossip, dht or both", val)
			}
		default:
			return q, fo, fmt.Errorf("unknown find parameter %q (want kind, task, skill, modality, role, name, owner, min_samples, max_age, source, timeout)", key)
		}
	}
	if err := q.Validate(); err != nil {
		return q, fo, err
	}
	return q, fo, nil
}

// lookupDescriptor resolves the {id} path value (a version id or a slot) to
// a descriptor, answering the request itself when it cannot.
func lookupDescriptor(svc *descriptors.Service, w http.ResponseWriter, r *http.Request) (*descriptors.Signed, bool) {
	id, err := cid.Decode(r.PathValue("id"))
	if err != nil {
		oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("descriptor id %q is not a CID (want the id or slot printed by daitn find)", r.PathValue("id")))
		return nil, false
	}
	sd, err := svc.Get(r.Context(), id)
	if err != nil {
		oam.WriteError(w, descriptorStatus(err), err)
		return nil, false
	}
	return sd, true
}
