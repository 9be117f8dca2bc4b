package p2ptest

import (
	"context"
	"testing"
	"time"
)

func TestNetGossipAndDHT(t *testing.T) {
	nw := New(t, 5, WithDHT(), WithPubSub())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var subs []interface {
		Next(context.Context) (any, error)
	}
	_ = subs
	topics := make([]chan struct{}, len(nw.Peers))
	for i, p := range nw.Peers {
		tp, err := p.PubSub.Join("test")
		if err != nil {
			t.Fatal(err)
		}
		sub, err := tp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan struct{}, 1)
		topics[i] = ch
		go func() {
			if _, err := sub.Next(ctx); err == nil {
				ch <- struct{}{}
			}
		}()
		if i == 0 {
			defer func() {
				Eventually(t, 5*time.Second, "mesh", func() bool { return len(tp.ListPeers()) > 0 })
				if err := tp.Publish(ctx, []byte("hi")); err != nil {
					t.Fatal(err)
				}
				for i, ch := range topics {
					select {
					case <-ch:
					case <-ctx.Done():
						t.Fatalf("peer %d got no message", i)
					}
				}
			}()
		}
	}
	for _, p := range nw.Peers {
		if p.DHT.RoutingTable().Size() == 0 {
			t.Fatalf("peer %s has empty routing table", p.Host.ID())
		}
	}
}
