package node

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/oam/dashboard"
)

// IDInfo is the answer of GET /v1/id.
type IDInfo struct {
	PeerID  string   `json:"peer_id"`
	Addrs   []string `json:"addrs"`
	Roles   []string `json:"roles"`
	Version string   `json:"version"`
	Private bool     `json:"private_federation"`
}

// PeerInfo is one row of GET /v1/peers.
type PeerInfo struct {
	PeerID    string  `json:"peer_id"`
	Addr      string  `json:"addr"`
	Direction string  `json:"direction"`
	LatencyMS float64 `json:"latency_ms"`
	Streams   int     `json:"streams"`
	Since     string  `json:"connected_since"`
	Agent     string  `json:"agent,omitempty"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	PeerID       string            `json:"peer_id"`
	Version      string            `json:"version"`
	Uptime       string            `json:"uptime"`
	Roles        []string          `json:"roles"`
	Peers        int               `json:"peers"`
	DHTMode      string            `json:"dht_mode"`
	DHTTable     int               `json:"dht_routing_table"`
	Reachability string            `json:"reachability"`
	Topics       []string          `json:"topics"`
	Services     []string          `json:"services"`
	DataDir      string            `json:"data_dir"`
	Private      bool              `json:"private_federation"`
	BandwidthIn  int64             `json:"bandwidth_in_bytes"`
	BandwidthOut int64             `json:"bandwidth_out_bytes"`
	Listen       []string          `json:"listen"`
	Extra        map[string]string `json:"extra,omitempty"`
}

// ConnectRequest is the body of POST /v1/connect.
type ConnectRequest struct {
	Addr string `json:"addr"`
}

func (n *Node) registerCoreAPI() {
	n.api.Handle("GET /v1/id", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, n.IDInfo())
	})
	n.api.Handle("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, n.Peers())
	})
	n.api.Handle("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		oam.WriteJSON(w, http.StatusOK, n.Status())
	})
	n.api.Handle("POST /v1/connect", func(w http.ResponseWriter, r *http.Request) {
		var req ConnectRequest
		if err := oam.ReadJSON(r, 4<<10, &req); err != nil {
			oam.WriteError(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		id, err := n.Connect(ctx, req.Addr)
		if err != nil {
			oam.WriteError(w, http.StatusBadGateway, err)
			return
		}
		oam.WriteJSON(w, http.StatusOK, map[string]string{"peer_id": id.String()})
	})
	n.api.Handle("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		oam.ServeSSE(w, r, n.events.Subscribe(r.Context()))
	})
	// The dashboard's files hold no data; the page calls the routes above
	// with the token it was given (see `daitn dashboard`).
	n.api.HandlePublic("GET "+dashboard.Path, dashboard.Handler())
	// Someone who types the API address into a browser finds the page.
	n.api.HandlePublic("GET /{$}", http.RedirectHandler(dashboard.Path, http.StatusFound))
}

// IDInfo describes this node.
func (n *Node) IDInfo() IDInfo {
	return IDInfo{PeerID: n.host.ID().String(), Addrs: n.Multiaddrs(), Roles: n.cfg.Roles, Version: Version, Private: n.private}
}

// Peers lists the connected peers, one row per peer (its oldest connection).
func (n *Node) Peers() []PeerInfo {
	out := []PeerInfo{}
	for _, p := range n.host.Network().Peers() {
		conns := n.host.Network().ConnsToPeer(p)
		if len(conns) == 0 {
			continue
		}
		c := conns[0]
		st := c.Stat()
		streams := 0
		for _, c := range conns {
			streams += len(c.GetStreams())
		}
		dir := "inbound"
		if st.Direction == network.DirOutbound {
			dir = "outbound"
		}
		agent := ""
		if v, err := n.host.Peerstore().Get(p, "AgentVersion"); err == nil {
			agent, _ = v.(string)
		}
		out = append(out, PeerInfo{
			PeerID:    p.String(),
			Addr:      c.RemoteMultiaddr().String(),
			Direction: dir,
			LatencyMS: float64(n.host.Peerstore().LatencyEWMA(p).Microseconds()) / 1000,
			Streams:   streams,
			Since:     st.Opened.UTC().Format(time.RFC3339),
			Agent:     agent,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeerID < out[j].PeerID })
	return out
}

// Status summarises the node's health.
func (n *Node) Status() Status {
	var in, outb int64
	for _, s := range n.bw.GetBandwidthByProtocol() {
		in += s.TotalIn
		outb += s.TotalOut
	}
	reach := "unknown"
	if sub, err := n.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged)); err == nil {
		// The bus replays the last reachability event to new subscribers.
		select {
		case ev := <-sub.Out():
			reach = ev.(event.EvtLocalReachabilityChanged).Reachability.String()
		default:
		}
		sub.Close()
	}
	mode := n.cfg.Network.DHTMode
	// A DHT in server mode is the one that answers the kad protocol.
	now := " (client now)"
	for _, p := range n.host.Mux().Protocols() {
		if p == "/daitn/kad/1.0.0" {
			now = " (server now)"
		}
	}
	mode += now
	var listen []string
	for _, a := range n.host.Network().ListenAddresses() {
		listen = append(listen, a.String())
	}
	n.svcMu.Lock()
	var svcs []string
	for _, s := range n.svcs {
		svcs = append(svcs, s.name)
	}
	n.svcMu.Unlock()
	topics := n.ps.GetTopics()
	sort.Strings(topics)
	return Status{
		PeerID:       n.host.ID().String(),
		Version:      Version,
		Uptime:       time.Since(n.started).Round(time.Second).String(),
		Roles:        n.cfg.Roles,
		Peers:        len(n.host.Network().Peers()),
		DHTMode:      mode,
		DHTTable:     n.dht.RoutingTable().Size(),
		Reachability: reach,
		Topics:       topics,
		Services:     svcs,
		DataDir:      n.cfg.DataDir,
		Private:      n.private,
		BandwidthIn:  in,
		BandwidthOut: outb,
		Listen:       listen,
	}
}
