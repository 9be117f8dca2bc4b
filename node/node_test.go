package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"

	"github.com/daitn/daitn/node"
	"github.com/daitn/daitn/node/nodetest"
	"github.com/daitn/daitn/oam"
)

// okValidator accepts any record under /test/ and keeps the first; it lets the
// core tests use the DHT before any service defines records.
type okValidator struct{}

func (okValidator) Validate(string, []byte) error        { return nil }
func (okValidator) Select(string, [][]byte) (int, error) { return 0, nil }

func testValidator() nodetest.Option {
	return nodetest.WithNodeOptions(node.WithRecordValidator("test", okValidator{}))
}

func TestConnectThroughAPI(t *testing.T) {
	nodes := nodetest.Start(t, 2, nodetest.WithoutServices(), nodetest.WithConfig(func(i int, c *node.Config) {
		c.Network.Bootstrap = nil
	}))
	a, b := nodes[0], nodes[1]
	cl, err := oam.Dial(a.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got map[string]string
	if err := cl.Call(ctx, "POST", "/v1/connect", node.ConnectRequest{Addr: nodetest.TCPAddr(b.Node)}, &got); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if got["peer_id"] != b.ID().String() {
		t.Fatalf("connected to %q, want %s", got["peer_id"], b.ID())
	}
	var peers []node.PeerInfo
	if err := cl.Call(ctx, "GET", "/v1/peers", nil, &peers); err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].PeerID != b.ID().String() {
		t.Fatalf("peers = %+v, want just %s", peers, b.ID())
	}
	// A bad address is an error naming it.
	err = cl.Call(ctx, "POST", "/v1/connect", node.ConnectRequest{Addr: "/ip4/127.0.0.1/tcp/notaport"}, nil)
	if err == nil || !strings.Contains(err.Error(), "notaport") {
		t.Fatalf("bad multiaddr: err = %v, want one naming the address", err)
	}
}

func TestAPIToken(t *testing.T) {
	nodes := nodetest.Start(t, 1, nodetest.WithoutServices())
	addr := nodes[0].APIAddr()
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "Bearer 0000", http.StatusUnauthorized},
		{"not bearer", "Basic abc", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+addr+"/v1/id", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	fi, err := os.Stat(filepath.Join(nodes[0].DataDir(), oam.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	cl, err := oam.Dial(nodes[0].DataDir())
	if err != nil {
		t.Fatal(err)
	}
	var id node.IDInfo
	if err := cl.Call(context.Background(), "GET", "/v1/id", nil, &id); err != nil {
		t.Fatal(err)
	}
	if id.PeerID != nodes[0].ID().String() {
		t.Fatalf("id %s, want %s", id.PeerID, nodes[0].ID())
	}
}

func TestEventsStream(t *testing.T) {
	nodes := nodetest.Start(t, 1, nodetest.WithoutServices())
	cl, _ := oam.Dial(nodes[0].DataDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan oam.Event, 1)
	go func() {
		_ = cl.Stream(ctx, "/v1/events", func(ev oam.Event) error {
			if ev.Type == "peer.connected" {
				got <- ev
				return fmt.Errorf("done")
			}
			return nil
		})
	}()
	// Give the stream time to subscribe, then make a peer connect (repeat
	// until seen, since the subscription is asynchronous).
	other := nodetest.Start(t, 1, nodetest.WithoutServices())[0]
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-got:
			if !bytes.Contains(ev.Data.(json.RawMessage), []byte(other.ID().String())) {
				t.Fatalf("event %s does not name peer %s", ev.Data, other.ID())
			}
			return
		case <-tick.C:
			_ = other.Host().Network().ClosePeer(nodes[0].ID())
			_, _ = other.Connect(ctx, nodetest.TCPAddr(nodes[0].Node))
		case <-ctx.Done():
			t.Fatal("no peer.connected event")
		}
	}
}

func TestNetwork25(t *testing.T) {
	const n = 25
	nodes := nodetest.Start(t, n, nodetest.WithoutServices(), testValidator())
	for i, nd := range nodes {
		nodetest.Eventually(t, 30*time.Second, fmt.Sprintf("node %d routing table filled", i), func() bool {
			return nd.DHT().RoutingTable().Size() >= 5
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Put on node 3, read from the node farthest from it in XOR space.
	key := "/test/hello"
	val := []byte("world")
	if err := nodes[3].DHT().PutValue(ctx, key, val); err != nil {
		t.Fatalf("put: %v", err)
	}
	far := farthest(nodes, nodes[3].ID())
	got, err := far.DHT().GetValue(ctx, key)
	if err != nil {
		t.Fatalf("get from farthest node %s: %v", far.ID(), err)
	}
	if !bytes.Equal(got, val) {
		t.Fatalf("got %q, want %q", got, val)
	}

	// A gossip message from one node reaches all 25.
	const topic = "daitn/test/1"
	subs := make([]chan []byte, n)
	for i, nd := range nodes {
		tp, err := nd.PubSub().Join(topic)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := tp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan []byte, 1)
		subs[i] = ch
		go func() {
			m, err := sub.Next(ctx)
			if err == nil {
				ch <- m.Data
			}
		}()
		if i == n-1 {
			nodetest.Eventually(t, 20*time.Second, "gossip mesh", func() bool { return len(tp.ListPeers()) > 0 })
			if err := tp.Publish(ctx, []byte("ping")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, ch := range subs {
		select {
		case m := <-ch:
			if string(m) != "ping" {
				t.Fatalf("node %d got %q", i, m)
			}
		case <-ctx.Done():
			t.Fatalf("node %d never got the gossip message", i)
		}
	}
}

func farthest(nodes []*nodetest.Node, from peer.ID) *nodetest.Node {
	best, bestD := nodes[0], []byte(nil)
	fk := []byte(from)
	for _, nd := range nodes {
		k := []byte(nd.ID())
		d := make([]byte, len(k))
		for i := range k {
			if i < len(fk) {
				d[i] = k[i] ^ fk[i]
			}
		}
		if bestD == nil || bytes.Compare(d, bestD) > 0 {
			best, bestD = nd, d
		}
	}
	return best
}

func TestRestartKeepsIdentityAndRecords(t *testing.T) {
	nodes := nodetest.Start(t, 2, nodetest.WithoutServices(), testValidator())
	a := nodes[0]
	id := a.ID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodetest.Eventually(t, 10*time.Second, "routing table", func() bool { return a.DHT().RoutingTable().Size() > 0 })
	if err := a.DHT().PutValue(ctx, "/test/keep", []byte("me")); err != nil {
		t.Fatal(err)
	}
	nodes[1].Kill()
	a2 := a.Restart()
	if a2.ID() != id {
		t.Fatalf("peer ID changed across restart: %s -> %s", id, a2.ID())
	}
	// No peers are left, so the value can only come from the local store.
	got, err := a2.DHT().GetValue(ctx, "/test/keep")
	if err != nil || string(got) != "me" {
		t.Fatalf("after restart GetValue = %q, %v; want %q", got, err, "me")
	}
}

func writeSwarmKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	path := filepath.Join(t.TempDir(), "swarm.key")
	body := fmt.Sprintf("/key/swarm/psk/1.0.0/\n/base16/\n%x\n", k)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pnet.DecodeV1PSK(strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSwarmKey(t *testing.T) {
	key := writeSwarmKey(t)
	// node 0 and 1 share the key, node 2 has none.
	nodes := nodetest.Start(t, 3, nodetest.WithoutServices(), nodetest.WithConfig(func(i int, c *node.Config) {
		c.Network.Bootstrap = nil
		if i < 2 {
			c.Network.SwarmKey = key
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[1].Connect(ctx, nodetest.TCPAddr(nodes[0].Node)); err != nil {
		t.Fatalf("two nodes with the key cannot connect: %v", err)
	}
	for _, pair := range [][2]int{{2, 0}, {0, 2}} {
		from, to := nodes[pair[0]], nodes[pair[1]]
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := from.Connect(cctx, nodetest.TCPAddr(to.Node))
		ccancel()
		if err == nil {
			t.Fatalf("node %d connected to node %d across the swarm key boundary", pair[0], pair[1])
		}
	}
	if got := len(nodes[2].Host().Network().Peers()); got != 0 {
		t.Fatalf("keyless node has %d peers, want 0", got)
	}
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"unknown key", "colour = \"blue\"\n", "colour"},
		{"unknown nested key", "[network]\nlisten_on = []\n", "network.listen_on"},
		{"bad multiaddr", "[network]\nlisten = [\"/ip4/1.2.3/tcp/1\"]\n", "/ip4/1.2.3/tcp/1"},
		{"bad bootstrap", "[network]\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n", "/p2p/"},
		{"bad role", "roles = [\"wizard\"]\n", "wizard"},
		{"public api", "[api]\nlisten = \"0.0.0.0:5080\"\n", "loopback"},
		{"bad dht mode", "[network]\ndht_mode = \"sometimes\"\n", "dht_mode"},
		{"bad toml", "roles = [\n", "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node.ParseConfig(dir, []byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()

	cfg := nodetest.Config(t.TempDir())
	cfg.API.Listen = busy
	_, err = node.New(context.Background(), cfg, node.WithLogger(nodetest.Logger("x")), node.WithoutServices())
	if err == nil || !strings.Contains(err.Error(), busy) {
		t.Fatalf("api port in use: err = %v, want one naming %s", err, busy)
	}
	// The failed start released the store: the same directory starts fine.
	cfg.API.Listen = "127.0.0.1:0"
	_, port, _ := net.SplitHostPort(busy)
	cfg2 := cfg
	cfg2.Network.Listen = []string{"/ip4/127.0.0.1/tcp/" + port}
	_, err = node.New(context.Background(), cfg2, node.WithLogger(nodetest.Logger("x")), node.WithoutServices())
	if err == nil || !strings.Contains(err.Error(), port) {
		t.Fatalf("libp2p port in use: err = %v, want one naming port %s", err, port)
	}
	n, err := node.New(context.Background(), cfg, node.WithLogger(nodetest.Logger("x")), node.WithoutServices())
	if err != nil {
		t.Fatalf("start after failed starts: %v", err)
	}
	n.Close()
}

func TestInitKeepsKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	created, err := node.Init(dir)
	if err != nil || len(created) != 2 {
		t.Fatalf("first init: %v, created %v", err, created)
	}
	k1, _ := os.ReadFile(filepath.Join(dir, node.IdentityFile))
	created, err = node.Init(dir)
	if err != nil || len(created) != 0 {
		t.Fatalf("second init: %v, created %v", err, created)
	}
	k2, _ := os.ReadFile(filepath.Join(dir, node.IdentityFile))
	if !bytes.Equal(k1, k2) {
		t.Fatal("second init changed the identity key")
	}
	if _, err := node.LoadConfig(dir); err != nil {
		t.Fatalf("the config init wrote does not load: %v", err)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	nd := nodetest.Start(t, 1, nodetest.WithoutServices())[0]
	if err := nd.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := oam.Dial(nd.DataDir()); !errors.Is(err, oam.ErrNotRunning) {
		t.Fatalf("after Close, Dial = %v, want ErrNotRunning", err)
	}
}

func TestReconnectsToBootstrap(t *testing.T) {
	nodes := nodetest.Start(t, 2, nodetest.WithoutServices())
	boot, n1 := nodes[0], nodes[1]
	for i := 0; i < 2; i++ {
		if err := n1.Host().Network().ClosePeer(boot.ID()); err != nil {
			t.Fatal(err)
		}
		nodetest.Eventually(t, 10*time.Second, "reconnect to the bootstrap peer", func() bool {
			return len(n1.Host().Network().ConnsToPeer(boot.ID())) > 0
		})
	}
}

func TestMetricsEndpoint(t *testing.T) {
	nodes := nodetest.Start(t, 2, nodetest.WithoutServices())
	cl, _ := oam.Dial(nodes[0].DataDir())
	resp, err := cl.Do(context.Background(), "GET", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	for _, want := range []string{"daitn_peers 1", "daitn_dht_routing_table_peers", "daitn_bandwidth_in_bytes_total", "daitn_uptime_seconds"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
