package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/overlay"
)

// TestServicesThroughAPI starts three whole nodes with every service and
// drives them only through their control APIs, as the CLI and agents do: a
// data node publishes an MNIST shard, another node finds it by capability
// (DHT only, then gossip only) and sees the data node, its role and the
// dataset in its live map.
func TestServicesThroughAPI(t *testing.T) {
	nodes := nodetest.Start(t, 3, nodetest.WithConfig(func(i int, c *node.Config) {
		if i == 1 {
			c.Roles = []string{"data"}
		}
		c.Services = map[string]map[string]any{"overlay": {"interval": "1s"}}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, seeker := nodes[1], nodes[2]
	dc, err := oam.Dial(data.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := oam.Dial(seeker.DataDir())
	if err != nil {
		t.Fatal(err)
	}

	var info struct {
		ID      string `json:"id"`
		Samples int    `json:"samples"`
	}
	if err := dc.Call(ctx, "POST", "/v1/train/datasets", node.TrainDatasetRequest{MNISTShard: "1/20"}, &info); err != nil {
		t.Fatalf("publish shard: %v", err)
	}
	if info.Samples != 3000 {
		t.Fatalf("shard 1/20 has %d samples, want 3000", info.Samples)
	}

	for _, source := range []string{"dht", "gossip"} {
		nodetest.Eventually(t, 30*time.Second, "find the shard through "+source, func() bool {
			var res []json.RawMessage
			path := fmt.Sprintf("/v1/find?kind=data&task=digits-classification&min_samples=1000&source=%s&timeout=3s", source)
			if err := sc.Call(ctx, "GET", path, nil, &res); err != nil {
				t.Fatalf("find via %s: %v", source, err)
			}
			for _, r := range res {
				if bytes.Contains(r, []byte(data.ID().String())) {
					return true
				}
			}
			return false
		})
	}
	// A query the API cannot run is refused with the parameter named.
	err = sc.Call(ctx, "GET", "/v1/find?kind=data&colour=blue", nil, nil)
	if err == nil {
		t.Fatal("find with an unknown parameter was accepted")
	}

	nodetest.Eventually(t, 30*time.Second, "the data node and its dataset in the seeker's map", func() bool {
		var doc overlay.Document
		if err := sc.Call(ctx, "GET", "/v1/map", nil, &doc); err != nil {
			t.Fatalf("map: %v", err)
		}
		peerOK, itemOK := false, false
		for _, p := range doc.Peers {
			if p.ID == data.ID() {
				for _, r := range p.Roles {
					peerOK = peerOK || r == "data"
				}
			}
		}
		for _, it := range doc.Items {
			itemOK = itemOK || (it.Owner == data.ID() && it.Kind == "data")
		}
		return peerOK && itemOK && len(doc.Peers) >= 3
	})
}
