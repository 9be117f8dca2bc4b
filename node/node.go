package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/daitn/daitn/internal/gossip"
	"github.com/daitn/daitn/internal/store"
	"github.com/daitn/daitn/oam"
)

// Version is the daitn version reported by the API and the libp2p agent string.
var Version = "0.1.0-dev"

// Node is one running daitn peer.
type Node struct {
	cfg     Config
	log     *slog.Logger
	priv    crypto.PrivKey
	started time.Time

	store   ds.Batching
	storeC  io.Closer
	host    host.Host
	dht     *dht.IpfsDHT
	ps      *pubsub.PubSub
	bw      *metrics.BandwidthCounter
	reg     *prometheus.Registry
	gstats  *gossipStats
	mdns    mdns.Service
	api     *oam.Server
	events  *oam.Events
	private bool

	svcMu    sync.Mutex
	svcs     []namedService
	svcByKey map[string]io.Closer

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type namedService struct {
	name string
	svc  io.Closer
}

type options struct {
	logger     *slog.Logger
	validators map[string]record.Validator
	hostOpts   []libp2p.Option
	noServices bool
}

// Option changes how New builds the node.
type Option func(*options) error

// WithLogger sets the logger (default: slog.Default at the config's level).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("node: WithLogger(nil)")
		}
		o.logger = l
		return nil
	}
}

// WithRecordValidator adds a DHT record validator for namespace ns (keys
// /ns/...). The /daitn namespace is taken by the descriptors service.
func WithRecordValidator(ns string, v record.Validator) Option {
	return func(o *options) error {
		if ns == "" || strings.Contains(ns, "/") {
			return fmt.Errorf("node: record validator namespace %q must be one path segment", ns)
		}
		if _, dup := o.validators[ns]; dup {
			return fmt.Errorf("node: record validator for namespace %q given twice", ns)
		}
		o.validators[ns] = v
		return nil
	}
}

// WithHostOptions appends raw libp2p options (tests use it for transports).
func WithHostOptions(opts ...libp2p.Option) Option {
	return func(o *options) error {
		o.hostOpts = append(o.hostOpts, opts...)
		return nil
	}
}

// WithoutServices starts only the networking core (host, DHT, pubsub, API).
func WithoutServices() Option {
	return func(o *options) error {
		o.noServices = true
		return nil
	}
}

// New starts a node from cfg. The identity is created in cfg.DataDir if
// missing. ctx bounds start-up only; the node runs until Close. Everything
// started before a failure is closed again, so a failed New leaks nothing
// and leaves the data directory reusable.
func New(ctx context.Context, cfg Config, opts ...Option) (_ *Node, err error) {
	o := options{validators: map[string]record.Validator{}}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.logger == nil {
		lvl, _ := parseLevel(cfg.LogLevel)
		o.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	n := &Node{cfg: cfg, log: o.logger, started: time.Now(), events: oam.NewEvents(), svcByKey: map[string]io.Closer{}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()

	priv, _, err := LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.priv = priv

	st, err := store.Open(filepath.Join(cfg.DataDir, "store"))
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%w (is another node running on %s?)", err, cfg.DataDir)
		}
		return nil, err
	}
	n.store, n.storeC = st, st

	if err := n.startHost(o); err != nil {
		return nil, err
	}
	if err := n.startDHT(o); err != nil {
		return nil, err
	}
	if err := n.startPubSub(); err != nil {
		return nil, err
	}
	if err := n.startAPI(); err != nil {
		return nil, err
	}
	n.watchPeers()
	if err := n.startDiscovery(ctx); err != nil {
		return nil, err
	}
	if !o.noServices {
		if err := n.startServices(ctx); err != nil {
			return nil, err
		}
	}
	if n.api != nil {
		n.api.Start()
		if err := oam.WriteFileAtomic(filepath.Join(cfg.DataDir, oam.AddrFile), []byte(n.api.Addr()+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write api address: %w", err)
		}
	}
	n.log.Info("node started", "peer", n.host.ID(), "addrs", n.host.Addrs(), "api", n.APIAddr(), "private", n.private)
	return n, nil
}

func (n *Node) startHost(o options) error {
	cfg := n.cfg
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	addServiceLimits(&limits)
	lim := rcmgr.NewFixedLimiter(limits.Scale(int64(cfg.Limits.MaxMemoryMB)<<20, cfg.Limits.MaxFDs))
	rm, err := rcmgr.NewResourceManager(lim, rcmgr.WithAllowlistedMultiaddrs(loopbackAllowlist()))
	if err != nil {
		return fmt.Errorf("resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.Network.ConnLow, cfg.Network.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return fmt.Errorf("connection manager: %w", err)
	}
	n.bw = metrics.NewBandwidthCounter()
	n.reg = prometheus.NewRegistry()

	listen := cfg.Network.Listen
	hopts := []libp2p.Option{
		libp2p.Identity(n.priv),
		libp2p.UserAgent("daitn/" + Version),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.BandwidthReporter(n.bw),
		libp2p.PrometheusRegisterer(n.reg),
		libp2p.EnableNATService(),
		libp2p.EnableHolePunching(),
		libp2p.EnableRelay(),
	}
	if cfg.Network.SwarmKey != "" {
		psk, err := readSwarmKey(cfg.Network.SwarmKey)
		if err != nil {
			return err
		}
		hopts = append(hopts, libp2p.PrivateNetwork(psk))
		n.private = true
		// libp2p private networks protect TCP only; QUIC would bypass the key.
		var tcpOnly []string
		for _, a := range listen {
			if strings.Contains(a, "/quic") || strings.Contains(a, "/udp/") {
				n.log.Warn("swarm key set: not listening on QUIC (private networks are TCP only)", "addr", a)
				continue
			}
			tcpOnly = append(tcpOnly, a)
		}
		if len(tcpOnly) == 0 {
			return fmt.Errorf("config network.listen: with a swarm key at least one TCP address is needed, got %v", listen)
		}
		listen = tcpOnly
	} else {
		hopts = append(hopts, libp2p.Transport(quic.NewTransport))
	}
	hopts = append(hopts, libp2p.ListenAddrStrings(listen...))
	if cfg.Network.NATPortMap {
		hopts = append(hopts, libp2p.NATPortMap())
	}
	if cfg.Network.Relay {
		hopts = append(hopts, libp2p.EnableRelayService())
		var static []peer.AddrInfo
		for _, b := range cfg.Network.Bootstrap {
			ai, _ := parseAddrInfo(b)
			static = append(static, *ai)
		}
		if len(static) > 0 {
			hopts = append(hopts, libp2p.EnableAutoRelayWithStaticRelays(static, autorelay.WithNumRelays(1)))
		}
	}
	hopts = append(hopts, o.hostOpts...)
	h, err := libp2p.New(hopts...)
	if err != nil {
		return fmt.Errorf("start libp2p host on %v: %w", listen, err)
	}
	n.host = h
	return nil
}

// addServiceLimits gives daitn's own stream protocols explicit budgets, so a
// flood on one protocol cannot starve the others.
func addServiceLimits(l *rcmgr.ScalingLimitConfig) {
	base := rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 128 << 20}
	inc := rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 64 << 20}
	for _, svc := range []string{"daitn.transfer", "daitn.taskpool", "daitn.probe", "daitn.train", "daitn.infer"} {
		l.AddServiceLimit(svc, base, inc)
	}
}

func loopbackAllowlist() []ma.Multiaddr {
	// Local federations (many nodes on one laptop) should not hit the
	// per-peer connection limits meant for strangers.
	a, _ := ma.NewMultiaddr("/ip4/127.0.0.0/ipcidr/8")
	return []ma.Multiaddr{a}
}

func readSwarmKey(path string) (pnet.PSK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config network.swarm_key: %w", err)
	}
	defer f.Close()
	psk, err := pnet.DecodeV1PSK(f)
	if err != nil {
		return nil, fmt.Errorf("config network.swarm_key %s: not a swarm key (want /key/swarm/psk/1.0.0/ format, see `daitn swarm-key`): %w", path, err)
	}
	return psk, nil
}

func (n *Node) startDHT(o options) error {
	mode := dht.ModeAutoServer
	switch n.cfg.Network.DHTMode {
	case DHTAuto:
		mode = dht.ModeAuto
	case DHTServer:
		mode = dht.ModeServer
	case DHTClient:
		mode = dht.ModeClient
	}
	var boot []peer.AddrInfo
	for _, b := range n.cfg.Network.Bootstrap {
		ai, _ := parseAddrInfo(b)
		boot = append(boot, *ai)
	}
	dopts := []dht.Option{
		dht.ProtocolPrefix("/daitn"),
		dht.Mode(mode),
		dht.Datastore(namespace.Wrap(n.store, ds.NewKey("/dht"))),
		dht.BootstrapPeers(boot...),
	}
	vals := defaultValidators()
	for ns, v := range o.validators {
		vals[ns] = v
	}
	for ns, v := range vals {
		dopts = append(dopts, dht.NamespacedValidator(ns, v))
	}
	d, err := dht.New(n.host, dopts...)
	if err != nil {
		return fmt.Errorf("start dht: %w", err)
	}
	n.dht = d
	return nil
}

func (n *Node) startPubSub() error {
	n.gstats = newGossipStats()
	popts := append(gossip.Options(), pubsub.WithRawTracer(n.gstats))
	ps, err := pubsub.NewGossipSub(n.ctx, n.host, popts...)
	if err != nil {
		return fmt.Errorf("start gossipsub: %w", err)
	}
	n.ps = ps
	return nil
}

func (n *Node) startAPI() error {
	if n.cfg.API.Listen == "" {
		return nil
	}
	tok, err := oam.LoadOrCreateToken(filepath.Join(n.cfg.DataDir, oam.TokenFile))
	if err != nil {
		return err
	}
	api, err := oam.Listen(n.cfg.API.Listen, tok, n.log.With("part", "api"))
	if err != nil {
		return fmt.Errorf("config api.listen: %w", err)
	}
	n.api = api
	n.registerCoreAPI()
	n.registerMetrics()
	return nil
}

// watchPeers turns connectedness changes into node events.
func (n *Node) watchPeers() {
	n.host.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			n.events.Publish(oam.Event{Type: "peer.connected", Data: map[string]string{"peer": c.RemotePeer().String(), "addr": c.RemoteMultiaddr().String()}})
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if nw.Connectedness(c.RemotePeer()) == network.Connected {
				return // another connection to the same peer remains
			}
			n.events.Publish(oam.Event{Type: "peer.disconnected", Data: map[string]string{"peer": c.RemotePeer().String()}})
		},
	})
}

// addService records a started service so Close stops it, in reverse order.
func (n *Node) addService(name string, svc io.Closer) {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	n.svcs = append(n.svcs, namedService{name, svc})
	n.svcByKey[name] = svc
}

func (n *Node) service(name string) io.Closer {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	return n.svcByKey[name]
}

// Close stops services, discovery, the API, pubsub, the DHT, the host and
// finally the store. It is idempotent and waits for every goroutine it started.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		// Stop taking API requests first, so no request reaches a service
		// that is closing; closing the event bus ends the node's SSE streams
		// so the server's shutdown does not wait on them.
		if n.api != nil {
			_ = os.Remove(filepath.Join(n.cfg.DataDir, oam.AddrFile))
			n.events.Close()
			_ = n.api.Close()
		}
		n.svcMu.Lock()
		svcs := n.svcs
		n.svcMu.Unlock()
		for i := len(svcs) - 1; i >= 0; i-- {
			if err := svcs[i].svc.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", svcs[i].name, err))
			}
		}
		if n.mdns != nil {
			_ = n.mdns.Close()
		}
		n.events.Close()
		n.cancel()
		n.wg.Wait()
		if n.dht != nil {
			if err := n.dht.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close dht: %w", err))
			}
		}
		if n.host != nil {
			if err := n.host.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close host: %w", err))
			}
		}
		if n.storeC != nil {
			if err := n.storeC.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close store: %w", err))
			}
		}
		n.closeErr = errors.Join(errs...)
		if n.host != nil {
			n.log.Info("node stopped", "peer", n.host.ID())
		}
	})
	return n.closeErr
}

// Accessors for services and tests.

func (n *Node) ID() peer.ID                    { return n.host.ID() }
func (n *Node) Host() host.Host                { return n.host }
func (n *Node) DHT() *dht.IpfsDHT              { return n.dht }
func (n *Node) PubSub() *pubsub.PubSub         { return n.ps }
func (n *Node) Store() ds.Batching             { return n.store }
func (n *Node) DataDir() string                { return n.cfg.DataDir }
func (n *Node) Config() Config                 { return n.cfg }
func (n *Node) Logger() *slog.Logger           { return n.log }
func (n *Node) PrivKey() crypto.PrivKey        { return n.priv }
func (n *Node) Events() *oam.Events            { return n.events }
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Context is cancelled when the node closes; services derive theirs from it.
func (n *Node) Context() context.Context { return n.ctx }

// API is the control API server, or nil if the node runs without one.
func (n *Node) API() *oam.Server { return n.api }

// APIAddr is the control API's bound address, or "" without an API.
func (n *Node) APIAddr() string {
	if n.api == nil {
		return ""
	}
	return n.api.Addr()
}

// AddrInfo is how other peers reach this node.
func (n *Node) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()} }

// Multiaddrs returns full dialable addresses ending in /p2p/<id>.
func (n *Node) Multiaddrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+n.host.ID().String())
	}
	return out
}

// Connect dials a full multiaddr (ending in /p2p/<id>).
func (n *Node) Connect(ctx context.Context, addr string) (peer.ID, error) {
	ai, err := parseAddrInfo(addr)
	if err != nil {
		return "", err
	}
	if ai.ID == n.host.ID() {
		return "", fmt.Errorf("connect %s: that is this node", addr)
	}
	if err := n.host.Connect(ctx, *ai); err != nil {
		return "", fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	return ai.ID, nil
}

func parseAddrInfo(s string) (*peer.AddrInfo, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("bad multiaddr %q: %w", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return nil, fmt.Errorf("multiaddr %q: want an address ending in /p2p/<peer id>: %w", s, err)
	}
	return ai, nil
}
