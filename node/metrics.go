package node

import (
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// gossipStats counts gossip messages per topic and outcome. It is a pubsub
// RawTracer, called synchronously from the pubsub loop, so it only bumps
// counters under a short lock.
type gossipStats struct {
	mu     sync.Mutex
	counts map[[2]string]uint64 // (topic, outcome) → count
}

func newGossipStats() *gossipStats { return &gossipStats{counts: map[[2]string]uint64{}} }

func (g *gossipStats) bump(msg *pubsub.Message, outcome string) {
	topic := ""
	if msg != nil && msg.Message != nil && msg.Topic != nil {
		topic = *msg.Topic
	}
	g.mu.Lock()
	g.counts[[2]string{topic, outcome}]++
	g.mu.Unlock()
}

func (g *gossipStats) snapshot() map[[2]string]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[[2]string]uint64, len(g.counts))
	for k, v := range g.counts {
		out[k] = v
	}
	return out
}

func (g *gossipStats) DeliverMessage(m *pubsub.Message)                     { g.bump(m, "delivered") }
func (g *gossipStats) RejectMessage(m *pubsub.Message, r string)            { g.bump(m, "rejected:"+r) }
func (g *gossipStats) DuplicateMessage(m *pubsub.Message)                   { g.bump(m, "duplicate") }
func (g *gossipStats) UndeliverableMessage(m *pubsub.Message)               { g.bump(m, "undeliverable") }
func (g *gossipStats) ValidateMessage(*pubsub.Message)                      {}
func (g *gossipStats) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (g *gossipStats) OnClosedOutboundStream(peer.ID)                       {}
func (g *gossipStats) Join(string)                                          {}
func (g *gossipStats) Leave(string)                                         {}
func (g *gossipStats) Graft(peer.ID, string)                                {}
func (g *gossipStats) Prune(peer.ID, string)                                {}
func (g *gossipStats) ThrottlePeer(peer.ID)                                 {}
func (g *gossipStats) RecvRPC(*pubsub.RPC)                                  {}
func (g *gossipStats) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (g *gossipStats) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (g *gossipStats) DropRPC(*pubsub.RPC, peer.ID)                         {}

// nodeCollector exports daitn's own gauges at scrape time, so nothing polls
// in the background.
type nodeCollector struct {
	n       *Node
	peers   *prometheus.Desc
	bwIn    *prometheus.Desc
	bwOut   *prometheus.Desc
	dhtSize *prometheus.Desc
	gossip  *prometheus.Desc
	uptime  *prometheus.Desc
}

func newNodeCollector(n *Node) *nodeCollector {
	return &nodeCollector{
		n:       n,
		peers:   prometheus.NewDesc("daitn_peers", "Connected peers.", nil, nil),
		bwIn:    prometheus.NewDesc("daitn_bandwidth_in_bytes_total", "Bytes received, by protocol.", []string{"protocol"}, nil),
		bwOut:   prometheus.NewDesc("daitn_bandwidth_out_bytes_total", "Bytes sent, by protocol.", []string{"protocol"}, nil),
		dhtSize: prometheus.NewDesc("daitn_dht_routing_table_peers", "Peers in the DHT routing table.", nil, nil),
		gossip:  prometheus.NewDesc("daitn_gossip_messages_total", "Gossip messages by topic and outcome.", []string{"topic", "outcome"}, nil),
		uptime:  prometheus.NewDesc("daitn_uptime_seconds", "Seconds since the node started.", nil, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.peers, c.bwIn, c.bwOut, c.dhtSize, c.gossip, c.uptime} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(len(n.host.Network().Peers())))
	ch <- prometheus.MustNewConstMetric(c.uptime, prometheus.GaugeValue, time.Since(n.started).Seconds())
	if n.dht != nil {
		ch <- prometheus.MustNewConstMetric(c.dhtSize, prometheus.GaugeValue, float64(n.dht.RoutingTable().Size()))
	}
	for p, s := range n.bw.GetBandwidthByProtocol() {
		ch <- prometheus.MustNewConstMetric(c.bwIn, prometheus.CounterValue, float64(s.TotalIn), string(p))
		ch <- prometheus.MustNewConstMetric(c.bwOut, prometheus.CounterValue, float64(s.TotalOut), string(p))
	}
	for k, v := range n.gstats.snapshot() {
		ch <- prometheus.MustNewConstMetric(c.gossip, prometheus.CounterValue, float64(v), k[0], k[1])
	}
}

func (n *Node) registerMetrics() {
	n.reg.MustRegister(newNodeCollector(n))
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.api.HandleHandler("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
}
