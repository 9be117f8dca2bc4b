package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// mdnsServiceName keeps daitn peers apart from other libp2p programs on the LAN.
const mdnsServiceName = "_daitn-discovery._udp"

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	n := m.n
	if ai.ID == n.host.ID() || n.host.Network().Connectedness(ai.ID) == network.Connected {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		defer cancel()
		if err := n.host.Connect(ctx, ai); err != nil {
			n.log.Debug("mdns peer unreachable", "peer", ai.ID, "err", err)
			return
		}
		n.log.Info("found peer on the local network", "peer", ai.ID)
	}()
}

// startDiscovery connects to the bootstrap peers, starts mDNS if enabled and
// keeps re-dialling bootstrap peers that drop. The DHT's own routing-table
// refresh does the random walk that finds the rest of the network.
func (n *Node) startDiscovery(ctx context.Context) error {
	var boot []peer.AddrInfo
	for _, b := range n.cfg.Network.Bootstrap {
		ai, _ := parseAddrInfo(b)
		boot = append(boot, *ai)
		n.host.ConnManager().Protect(ai.ID, "daitn-bootstrap")
	}
	if len(boot) > 0 {
		n.dialBootstrap(ctx, boot)
		// Bootstrap the DHT now that we have someone to ask.
		if err := n.dht.Bootstrap(n.ctx); err != nil {
			n.log.Warn("dht bootstrap", "err", err)
		}
		n.wg.Add(1)
		go n.reconnectLoop(boot)
	}
	if n.cfg.Network.MDNS {
		svc := mdns.NewMdnsService(n.host, mdnsServiceName, mdnsNotifee{n})
		if err := svc.Start(); err != nil {
			n.log.Warn("mdns unavailable", "err", err)
		} else {
			n.mdns = svc
		}
	}
	return nil
}

func (n *Node) dialBootstrap(ctx context.Context, boot []peer.AddrInfo) {
	for _, ai := range boot {
		if ai.ID == n.host.ID() || n.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.host.Connect(cctx, ai)
		cancel()
		if err != nil {
			n.log.Warn("bootstrap peer unreachable", "peer", ai.ID, "err", err)
			continue
		}
		n.log.Debug("connected to bootstrap peer", "peer", ai.ID)
	}
}

func (n *Node) reconnectLoop(boot []peer.AddrInfo) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Network.ReconnectEvery.Duration)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.dialBootstrap(n.ctx, boot)
		}
	}
}
