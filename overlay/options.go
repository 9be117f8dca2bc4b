package overlay

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

type config struct {
	interval      time.Duration
	ttlFactor     int
	minInterval   time.Duration
	floodGap      time.Duration
	probeInterval time.Duration
	maxProbes     int
	topicBudget   float64
	maxPeers      int
	roles         []string
	load          func() Load
	free          func() Capacity
	probeDelay    func(peer.ID) time.Duration
	source        ItemSource
	logger        *slog.Logger
}

// Option configures New.
type Option func(*config) error

func defaults() config {
	return config{
		interval:    10 * time.Second,
		ttlFactor:   3,
		minInterval: time.Second,
		floodGap:    500 * time.Millisecond,
		maxProbes:   8,
		topicBudget: 100,
		maxPeers:    20000,
		logger:      slog.Default(),
	}
}

// WithInterval sets the steady beacon interval (default 10s). The probe
// interval defaults to the same value.
func WithInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond || d > MaxTTL/3 {
			return fmt.Errorf("overlay option interval=%s: want 10ms..%s", d, MaxTTL/3)
		}
		c.interval = d
		return nil
	}
}

// WithTTLFactor sets a beacon's lifetime in intervals (default 3): a peer
// that misses that many beacons in a row leaves the map.
func WithTTLFactor(n int) Option {
	return func(c *config) error {
		if n < 2 || n > 20 {
			return fmt.Errorf("overlay option ttl factor=%d: want 2..20", n)
		}
		c.ttlFactor = n
		return nil
	}
}

// WithMinInterval sets the rate limit for beacons sent on change (default
// 1s) and the flood gap that every receiver enforces (default half of it):
// two beacons from one sender issued closer than the gap are a flood and are
// rejected. All nodes of a federation must use the same value.
func WithMinInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 2*time.Millisecond || d > time.Minute {
			return fmt.Errorf("overlay option min interval=%s: want 2ms..1m", d)
		}
		c.minInterval = d
		c.floodGap = d / 2
		return nil
	}
}

// WithProbe sets how often the node measures round-trip times and to how
// many connected peers per round (defaults: the beacon interval, 8 peers).
func WithProbe(every time.Duration, peers int) Option {
	return func(c *config) error {
		if every < 10*time.Millisecond || peers < 1 || peers > 256 {
			return fmt.Errorf("overlay option probe every=%s peers=%d: want every >= 10ms and 1..256 peers", every, peers)
		}
		c.probeInterval = every
		c.maxProbes = peers
		return nil
	}
}

// WithTopicBudget bounds the beacons per second the whole federation sends
// (default 100): each node stretches its interval to known peers / budget
// when that is longer than its configured interval, so per-node receive
// traffic stays flat as the federation grows.
func WithTopicBudget(perSecond float64) Option {
	return func(c *config) error {
		if perSecond < 1 || perSecond > 1e5 {
			return fmt.Errorf("overlay option topic budget=%v beacons/s: want 1..100000", perSecond)
		}
		c.topicBudget = perSecond
		return nil
	}
}

// WithMaxPeers bounds the peers the map keeps (default 20000); beyond it
// the least recently heard peer is dropped.
func WithMaxPeers(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("overlay option max peers=%d: must be >= 1", n)
		}
		c.maxPeers = n
		return nil
	}
}

// WithRoles sets the roles announced in beacons (e.g. "data", "compute").
func WithRoles(roles ...string) Option {
	return func(c *config) error {
		if err := checkRoles(roles); err != nil {
			return fmt.Errorf("overlay option roles: %w", err)
		}
		c.roles = append([]string(nil), roles...)
		return nil
	}
}

// WithLoad sets the function sampled for every beacon's load. The default
// reports CPU from the system load average and zero queues.
func WithLoad(f func() Load) Option {
	return func(c *config) error { c.load = f; return nil }
}

// WithFree sets the function sampled for every beacon's free capacity.
func WithFree(f func() Capacity) Option {
	return func(c *config) error { c.free = f; return nil }
}

// WithProbeDelay makes this node's probe handler wait delay(remote) before
// answering. It exists to emulate distance in tests and demos on one
// machine: a node that delays 50ms looks 50ms further away to everyone.
func WithProbeDelay(delay func(remote peer.ID) time.Duration) Option {
	return func(c *config) error { c.probeDelay = delay; return nil }
}

// WithItemSource feeds the map with descriptor content (see ItemSource).
func WithItemSource(src ItemSource) Option {
	return func(c *config) error { c.source = src; return nil }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l != nil {
			c.logger = l
		}
		return nil
	}
}

func checkRoles(roles []string) error {
	if len(roles) > MaxRoles {
		return fmt.Errorf("%d roles, at most %d allowed", len(roles), MaxRoles)
	}
	for i, r := range roles {
		if !validToken(r, maxRoleLen) {
			return fmt.Errorf("roles[%d]=%q: want 1-%d characters of a-z, 0-9, '-'", i, r, maxRoleLen)
		}
	}
	return nil
}
