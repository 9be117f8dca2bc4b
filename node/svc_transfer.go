package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/transfer"
)

// startTransfer opens the chunk store in <datadir>/chunks, serves
// /daitn/transfer/1.0.0 and registers the /v1/transfer/... API routes.
func (n *Node) startTransfer(ctx context.Context) error {
	var rt routing.Routing
	if d := n.DHT(); d != nil {
		rt = d
	}
	svc, err := transfer.New(ctx, n.Host(), rt, filepath.Join(n.DataDir(), "chunks"), transfer.WithLogger(n.Logger()))
	if err != nil {
		return err
	}
	n.addService("transfer", svc)
	if n.API() != nil {
		registerTransferAPI(n, svc)
	}
	if reg := n.Registry(); reg != nil {
		registerTransferMetrics(reg, svc)
	}
	return nil
}

func registerTransferMetrics(reg *prometheus.Registry, svc *transfer.Service) {
	counter := func(name, help string, get func(transfer.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "daitn_transfer_" + name, Help: help},
			func() float64 { return float64(get(svc.Counters())) })
	}
	for _, c := range []prometheus.Collector{
		counter("served_blocks_total", "Blocks served to peers.", func(s transfer.Stats) int64 { return s.ServedBlocks }),
		counter("served_bytes_total", "Bytes of blocks served to peers.", func(s transfer.Stats) int64 { return s.ServedBytes }),
		counter("fetched_blocks_total", "Verified blocks received from peers.", func(s transfer.Stats) int64 { return s.FetchedBlocks }),
		counter("fetched_bytes_total", "Bytes of verified blocks received from peers.", func(s transfer.Stats) int64 { return s.FetchedBytes }),
		counter("bad_blocks_total", "Blocks from peers that failed verification or broke the protocol.", func(s transfer.Stats) int64 { return s.BadBlocks }),
		counter("refused_total", "Requests refused by access policy.", func(s transfer.Stats) int64 { return s.Refused }),
	} {
		_ = reg.Register(c) // a second node in one process re-registers: ignore
	}
}

// Transfer is the node's transfer service (nil before start).
func (n *Node) Transfer() *transfer.Service {
	s, _ := n.service("transfer").(*transfer.Service)
	return s
}

// TransferAddRequest is the body of POST /v1/transfer/add.
type TransferAddRequest struct {
	Path    string   `json:"path"`              // absolute path on the node's machine
	Private []string `json:"private,omitempty"` // allow-list; empty = public
}

// TransferGetRequest is the body of POST /v1/transfer/get.
type TransferGetRequest struct {
	CID       string   `json:"cid"`
	Out       string   `json:"out,omitempty"`       // absolute path to export to; empty = only store
	Providers []string `json:"providers,omitempty"` // peer IDs or /p2p multiaddrs to ask first
	NoPin     bool     `json:"no_pin,omitempty"`
	Stream    bool     `json:"stream,omitempty"` // answer with NDJSON progress lines
}

// TransferGetLine is one line of a streamed get: type is "progress",
// "done" or "error".
type TransferGetLine struct {
	Type     string                `json:"type"`
	Progress *transfer.Progress    `json:"progress,omitempty"`
	Result   *transfer.FetchResult `json:"result,omitempty"`
	Error    string                `json:"error,omitempty"`
}

// TransferCIDRequest is the body of pin, unpin and policy.
type TransferCIDRequest struct {
	CID   string   `json:"cid"`
	Allow []string `json:"allow,omitempty"` // policy only
	// Public clears the policy (policy only).
	Public bool `json:"public,omitempty"`
}

func parseRoot(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("cid %q: %w (want the root CID printed by `daitn add`)", s, err)
	}
	return c, nil
}

func parsePeers(n *Node, ss []string) ([]peer.ID, error) {
	var out []peer.ID
	for _, s := range ss {
		if id, err := peer.Decode(s); err == nil {
			out = append(out, id)
			continue
		}
		ai, err := parseAddrInfo(s)
		if err != nil {
			return nil, fmt.Errorf("peer %q: want a peer ID or a multiaddr ending in /p2p/<id>: %w", s, err)
		}
		n.Host().Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
		out = append(out, ai.ID)
	}
	return out, nil
}

func transferStatus(err error) int {
	switch {
	case errors.Is(err, transfer.ErrNotFound), errors.Is(err, transfer.ErrNotPinned), errors.Is(err, os.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, transfer.ErrRefused):
		return http.StatusForbidden
	case errors.Is(err, transfer.ErrNoProviders):
		return http.StatusBadGateway
	case errors.Is(err, transfer.ErrTooLarge):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

func registerTransferAPI(n *Node, svc *transfer.Service) {
	api := n.API()
	api.Handle("POST /v1/transfer/add", func(w http.ResponseWriter, r *http.Request) {
		var req TransferAddRequest
		if err := oam.ReadJSON(r, 64<<10, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if !filepath.IsAbs(req.Path) {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("path %q is not absolute; the node resolves paths on its own machine", req.Path))
			return
		}
		allow, err := parsePeers(n, req.Private)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		var opts []transfer.AddOption
		if req.Private != nil {
			opts = append(opts, transfer.Private(allow...))
		}
		root, err := svc.AddFile(r.Context(), req.Path, opts...)
		if err != nil {
			oam.WriteError(w, transferStatus(err), err)
			return
		}
		in, err := svc.Stat(root)
		if err != nil {
			oam.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		n.Events().Publish(oam.Event{Type: "transfer.added", Data: in})
		oam.WriteJSON(w, http.StatusOK, in)
	})
	api.Handle("POST /v1/transfer/get", func(w http.ResponseWriter, r *http.Request) {
		var req TransferGetRequest
		if err := oam.ReadJSON(r, 64<<10, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		root, err := parseRoot(req.CID)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if req.Out != "" && !filepath.IsAbs(req.Out) {
			oam.WriteError(w, http.StatusBadRequest, fmt.Errorf("out %q is not absolute; the node resolves paths on its own machine", req.Out))
			return
		}
		provs, err := parsePeers(n, req.Providers)
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		for _, p := range provs {
			if len(n.Host().Peerstore().Addrs(p)) > 0 {
				cctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
				_ = n.Host().Connect(cctx, peer.AddrInfo{ID: p})
				cancel()
			}
		}
		var (
			enc *json.Encoder
			fl  http.Flusher
		)
		if req.Stream {
			fl, _ = w.(http.Flusher)
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			enc = json.NewEncoder(w)
		}
		line := func(l TransferGetLine) {
			if enc == nil {
				return
			}
			_ = enc.Encode(l)
			if fl != nil {
				fl.Flush()
			}
		}
		lastEvent := time.Time{}
		opts := transfer.FetchOptions{NoPin: req.NoPin, Providers: provs, Progress: func(p transfer.Progress) {
			line(TransferGetLine{Type: "progress", Progress: &p})
			if time.Since(lastEvent) > time.Second || p.Done {
				lastEvent = time.Now()
				n.Events().Publish(oam.Event{Type: "transfer.progress", Data: p})
			}
		}}
		res, err := svc.Fetch(r.Context(), root, opts)
		if err == nil && req.Out != "" {
			err = svc.ExportPath(r.Context(), root, req.Out)
		}
		if err != nil {
			if enc != nil {
				line(TransferGetLine{Type: "error", Error: err.Error()})
			} else {
				oam.WriteError(w, transferStatus(err), err)
			}
			return
		}
		n.Events().Publish(oam.Event{Type: "transfer.fetched", Data: res})
		if enc != nil {
			line(TransferGetLine{Type: "done", Result: res})
		} else {
			oam.WriteJSON(w, http.StatusOK, res)
		}
	})
	cidHandler := func(fn func(ctx context.Context, req TransferCIDRequest, root cid.Cid) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req TransferCIDRequest
			if err := oam.ReadJSON(r, 64<<10, &req); err != nil {
				oam.WriteError(w, http.StatusBadRequest, err)
				return
			}
			root, err := parseRoot(req.CID)
			if err != nil {
				oam.WriteError(w, http.StatusBadRequest, err)
				return
			}
			out, err := fn(r.Context(), req, root)
			if err != nil {
				oam.WriteError(w, transferStatus(err), err)
				return
			}
			oam.WriteJSON(w, http.StatusOK, out)
		}
	}
	api.Handle("POST /v1/transfer/pin", cidHandler(func(ctx context.Context, _ TransferCIDRequest, root cid.Cid) (any, error) {
		if err := svc.Pin(ctx, root); err != nil {
			return nil, err
		}
		return svc.Stat(root)
	}))
	api.Handle("POST /v1/transfer/unpin", cidHandler(func(ctx context.Context, _ TransferCIDRequest, root cid.Cid) (any, error) {
		if err := svc.Unpin(ctx, root); err != nil {
			return nil, err
		}
		return map[string]string{"unpinned": root.String()}, nil
	}))
	api.Handle("POST /v1/transfer/policy", cidHandler(func(ctx context.Context, req TransferCIDRequest, root cid.Cid) (any, error) {
		var allow []peer.ID
		if !req.Public {
			var err error
			if allow, err = parsePeers(n, req.Allow); err != nil {
				return nil, err
			}
			if allow == nil {
				allow = []peer.ID{}
			}
		}
		if err := svc.SetPolicy(root, allow); err != nil {
			return nil, err
		}
		return svc.Stat(root)
	}))
	api.Handle("POST /v1/transfer/gc", func(w http.ResponseWriter, r *http.Request) {
		res, err := svc.GC(r.Context())
		if err != nil {
			oam.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, res)
	})
	api.Handle("GET /v1/transfer/stat", func(w http.ResponseWriter, r *http.Request) {
		st, err := svc.Stats()
		if err != nil {
			oam.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, st)
	})
	api.Handle("GET /v1/transfer/stat/{cid}", func(w http.ResponseWriter, r *http.Request) {
		root, err := parseRoot(r.PathValue("cid"))
		if err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		in, err := svc.Stat(root)
		if err != nil {
			oam.WriteError(w, transferStatus(err), err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, in)
	})
	api.Handle("GET /v1/transfer/pins", func(w http.ResponseWriter, r *http.Request) {
		pins, err := svc.Pins()
		if err != nil {
			oam.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		out := []transfer.Info{}
		for _, p := range pins {
			if in, err := svc.Stat(p); err == nil {
				out = append(out, in)
			}
		}
		oam.WriteJSON(w, http.StatusOK, out)
	})
}
