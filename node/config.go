package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/daitn/daitn/oam"
)

// Roles a node can take; they are advertised in its beacon and select which
// services do work.
var Roles = []string{"data", "compute", "mpvu", "host", "client"}

// Config is the node's configuration, read from config.toml in the data
// directory and overridden by flags. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// DataDir holds identity, store, chunks and API files. Not in the file.
	DataDir string `toml:"-"`

	Roles    []string `toml:"roles"`
	LogLevel string   `toml:"log_level"`

	Network NetworkConfig `toml:"network"`
	API     APIConfig     `toml:"api"`
	Limits  LimitsConfig  `toml:"limits"`
	// Services is for service-specific settings; each service reads its own table.
	Services map[string]map[string]any `toml:"services"`
}

// NetworkConfig is the libp2p side.
type NetworkConfig struct {
	Listen         []string `toml:"listen"`
	Bootstrap      []string `toml:"bootstrap"`
	MDNS           bool     `toml:"mdns"`
	NATPortMap     bool     `toml:"nat_port_map"`
	Relay          bool     `toml:"relay"`
	SwarmKey       string   `toml:"swarm_key"`
	DHTMode        string   `toml:"dht_mode"`
	ConnLow        int      `toml:"conn_low"`
	ConnHigh       int      `toml:"conn_high"`
	ReconnectEvery Duration `toml:"reconnect_every"`
}

// APIConfig is the local control API.
type APIConfig struct {
	Listen string `toml:"listen"`
}

// LimitsConfig bounds what libp2p may use (resource manager).
type LimitsConfig struct {
	MaxMemoryMB int `toml:"max_memory_mb"`
	MaxFDs      int `toml:"max_fds"`
}

// Duration is a time.Duration written as "10s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like 10s or 1m: %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// DHT modes accepted in the config.
const (
	DHTAutoServer = "auto-server" // server unless AutoNAT finds us private (the default)
	DHTAuto       = "auto"        // client until AutoNAT finds us public
	DHTServer     = "server"
	DHTClient     = "client"
)

// DefaultPort is the TCP and UDP port of a node started with the defaults.
const DefaultPort = 4001

// DefaultAPI is the control API address of a node started with the defaults.
const DefaultAPI = "127.0.0.1:5080"

// DefaultConfig returns the configuration `daitn init` writes.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:  dataDir,
		Roles:    []string{"client"},
		LogLevel: "info",
		Network: NetworkConfig{
			Listen: []string{
				fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", DefaultPort),
				fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", DefaultPort),
			},
			MDNS:           true,
			NATPortMap:     true,
			Relay:          true,
			DHTMode:        DHTAutoServer,
			ConnLow:        64,
			ConnHigh:       256,
			ReconnectEvery: Duration{15 * time.Second},
		},
		API:    APIConfig{Listen: DefaultAPI},
		Limits: LimitsConfig{MaxMemoryMB: 1024, MaxFDs: 1024},
	}
}

// ConfigFile is the config's name inside the data directory.
const ConfigFile = "config.toml"

// LoadConfig reads dataDir/config.toml over the defaults. Unknown keys are an
// error naming the key, so a typo never silently does nothing.
func LoadConfig(dataDir string) (Config, error) {
	cfg := DefaultConfig(dataDir)
	path := filepath.Join(dataDir, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return cfg, nil
		}
		return cfg, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(dataDir, b)
}

// ParseConfig parses TOML bytes over the defaults and validates the result.
func ParseConfig(dataDir string, b []byte) (Config, error) {
	cfg := DefaultConfig(dataDir)
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&cfg)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w", filepath.Join(dataDir, ConfigFile), err)
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "services" {
			continue // each service validates its own table
		}
		unknown = append(unknown, k.String())
	}
	if len(unknown) > 0 {
		return cfg, fmt.Errorf("config %s: unknown key(s) %s", filepath.Join(dataDir, ConfigFile), strings.Join(unknown, ", "))
	}
	return cfg, cfg.Validate()
}

// Validate checks every field and names the first one that is wrong.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("config: data directory is empty")
	}
	for _, r := range c.Roles {
		if !slices.Contains(Roles, r) {
			return fmt.Errorf("config roles: unknown role %q, want some of %s", r, strings.Join(Roles, ","))
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if len(c.Network.Listen) == 0 {
		return errors.New("config network.listen: empty, want at least one multiaddr such as /ip4/0.0.0.0/tcp/4001")
	}
	for _, a := range c.Network.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("config network.listen: bad multiaddr %q: %w", a, err)
		}
	}
	for _, a := range c.Network.Bootstrap {
		if _, err := parseAddrInfo(a); err != nil {
			return fmt.Errorf("config network.bootstrap: %w", err)
		}
	}
	switch c.Network.DHTMode {
	case DHTAutoServer, DHTAuto, DHTServer, DHTClient:
	default:
		return fmt.Errorf("config network.dht_mode: %q, want one of auto-server, auto, server, client", c.Network.DHTMode)
	}
	if c.Network.ConnLow <= 0 || c.Network.ConnHigh < c.Network.ConnLow {
		return fmt.Errorf("config network.conn_low/conn_high: %d/%d, want 0 < conn_low <= conn_high", c.Network.ConnLow, c.Network.ConnHigh)
	}
	if c.Network.ReconnectEvery.Duration < time.Second {
		return fmt.Errorf("config network.reconnect_every: %v, want at least 1s", c.Network.ReconnectEvery.Duration)
	}
	if c.API.Listen != "" {
		if err := oam.CheckLoopback(c.API.Listen); err != nil {
			return fmt.Errorf("config api.listen: %w", err)
		}
	}
	if c.Limits.MaxMemoryMB < 64 {
		return fmt.Errorf("config limits.max_memory_mb: %d, want at least 64", c.Limits.MaxMemoryMB)
	}
	if c.Limits.MaxFDs < 64 {
		return fmt.Errorf("config limits.max_fds: %d, want at least 64", c.Limits.MaxFDs)
	}
	return nil
}

// HasRole reports whether the node takes role r.
func (c *Config) HasRole(r string) bool { return slices.Contains(c.Roles, r) }

// ConfigTemplate is the commented config.toml written by `daitn init`.
const ConfigTemplate = `# daitn node configuration. Flags given to ` + "`daitn up`" + ` override these values.
# Delete a line to get its default back.

# What this node offers: any of data, compute, mpvu, host, client.
roles = ["client"]

# debug, info, warn or error.
log_level = "info"

[network]
# Multiaddrs to listen on. TCP and QUIC on all interfaces by default.
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]

# Peers to join through, as full multiaddrs ending in /p2p/<peer id>.
# The node reconnects to them whenever they drop.
bootstrap = []

# Find peers on the local network with mDNS.
mdns = true

# Ask the router for a port mapping (UPnP / NAT-PMP).
nat_port_map = true

# Use relays offered by bootstrap peers when behind NAT, and hole punching.
relay = true

# A libp2p pre-shared key file (private federation). Nodes without the same
# key cannot connect to this one, in either direction. QUIC is not used with
# a swarm key: libp2p's private networks are TCP only.
swarm_key = ""

# DHT mode: auto-server (server unless found unreachable), auto, server, client.
dht_mode = "auto-server"

# Connection manager watermarks.
conn_low = 64
conn_high = 256

# How often to re-dial bootstrap peers that dropped.
reconnect_every = "15s"

[api]
# The local control API; always on loopback. The CLI finds it through the data
# directory, so the port may be 0 (any free port).
listen = "127.0.0.1:5080"

[limits]
# libp2p resource manager limits.
max_memory_mb = 1024
max_fds = 1024
`
