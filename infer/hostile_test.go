package infer_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/daitn/daitn/infer"
)

// A peer opens hundreds of query streams and trickles one byte into each,
// holding them up to the read deadline. Its streams cost it, not the
// host's query slots: an honest client is still answered at once.
func TestTricklingPeerDoesNotStarveHonestClients(t *testing.T) {
	weights, test, _ := infer.TrainedModel(t)
	nodes := federation(t, 3)
	h, attacker, honest := nodes[0], nodes[1], nodes[2]
	slot := host(t, h, "digits", 0.9, weights)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var held []network.Stream
	for i := 0; i < 300; i++ {
		st, err := attacker.Host().NewStream(ctx, h.ID(), infer.ProtocolID)
		if err != nil {
			break // the resource manager refused: fine
		}
		if _, err := st.Write([]byte{0x80}); err != nil {
			_ = st.Reset()
			break
		}
		held = append(held, st)
	}
	t.Cleanup(func() {
		for _, st := range held {
			_ = st.Reset()
		}
	})
	if len(held) == 0 {
		t.Fatal("the attacker could not open a single stream")
	}
	t0 := time.Now()
	res, err := honest.Infer().Ask(ctx, h.ID(), slot, "", pngDigit(t, test.X[:784]))
	if err != nil || res.Class != int(test.Y[0]) {
		t.Fatalf("honest query with %d trickling streams open: %v", len(held), err)
	}
	t.Logf("%d trickling streams open; honest query answered in %v", len(held), time.Since(t0))
}
