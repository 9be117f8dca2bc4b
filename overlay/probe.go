package overlay

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProbeProtocol measures round-trip time: the client sends probeSize random
// bytes up to probeRounds times on one stream, the server echoes each.
const ProbeProtocol = "/daitn/probe/1.0.0"

const (
	probeSize    = 32
	probeRounds  = 2
	probeTimeout = 5 * time.Second
	// probeRetryIntervals keeps the prober off a peer that failed for that
	// many probe intervals.
	probeRetryIntervals = 5
)

func (s *Service) handleProbe(st network.Stream) {
	if err := st.Scope().SetService("daitn.overlay.probe"); err != nil {
		_ = st.Reset()
		return
	}
	if err := st.Scope().ReserveMemory(probeSize, network.ReservationPriorityAlways); err != nil {
		_ = st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(probeSize)
	_ = st.SetDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, probeSize)
	for i := 0; i < probeRounds; i++ {
		if _, err := io.ReadFull(st, buf); err != nil {
			if err == io.EOF {
				break
			}
			_ = st.Reset()
			return
		}
		if s.cfg.probeDelay != nil {
			if d := s.cfg.probeDelay(st.Conn().RemotePeer()); d > 0 {
				select {
				case <-time.After(min(d, probeTimeout)):
				case <-s.ctx.Done():
					_ = st.Reset()
					return
				}
			}
		}
		if _, err := st.Write(buf); err != nil {
			_ = st.Reset()
			return
		}
	}
	_ = st.Close()
}

// Probe measures the round-trip time to p over ProbeProtocol. The first
// exchange also pays for protocol negotiation, so the last one counts.
func (s *Service) Probe(ctx context.Context, p peer.ID) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	st, err := s.h.NewStream(ctx, p, ProbeProtocol)
	if err != nil {
		return 0, fmt.Errorf("probe %s: open stream: %w", p, err)
	}
	_ = st.SetDeadline(time.Now().Add(probeTimeout))
	out, in := make([]byte, probeSize), make([]byte, probeSize)
	var rtt time.Duration
	for i := 0; i < probeRounds; i++ {
		if _, err := rand.Read(out); err != nil {
			_ = st.Reset()
			return 0, fmt.Errorf("probe %s: %w", p, err)
		}
		t0 := time.Now()
		if _, err := st.Write(out); err != nil {
			_ = st.Reset()
			return 0, fmt.Errorf("probe %s: write: %w", p, err)
		}
		if _, err := io.ReadFull(st, in); err != nil {
			_ = st.Reset()
			return 0, fmt.Errorf("probe %s: read echo: %w", p, err)
		}
		rtt = time.Since(t0)
		if !bytes.Equal(in, out) {
			_ = st.Reset()
			return 0, fmt.Errorf("probe %s: echo differs from what was sent", p)
		}
	}
	_ = st.Close()
	return rtt, nil
}

func (s *Service) probeLoop() {
	t := time.NewTicker(s.cfg.probeInterval)
	defer t.Stop()
	failed := map[peer.ID]time.Time{}
	for {
		s.probeRound(failed)
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeRound measures the connected peers probed least recently.
func (s *Service) probeRound(failed map[peer.ID]time.Time) {
	now := time.Now()
	retry := probeRetryIntervals * s.cfg.probeInterval
	var cands []peer.ID
	s.mu.Lock()
	// Only peers that beacon run the overlay and answer probes; a plain DHT
	// server or a node still starting up would only cost a failed stream.
	for _, p := range s.h.Network().Peers() {
		if at, ok := failed[p]; ok && now.Sub(at) < retry {
			continue
		}
		if s.peers[p] != nil {
			cands = append(cands, p)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := s.probedAt[cands[i]], s.probedAt[cands[j]]
		if !a.Equal(b) {
			return a.Before(b)
		}
		return cands[i] < cands[j]
	})
	s.mu.Unlock()
	if len(cands) > s.cfg.maxProbes {
		cands = cands[:s.cfg.maxProbes]
	}
	for _, p := range cands {
		if s.ctx.Err() != nil {
			return
		}
		rtt, err := s.Probe(s.ctx, p)
		if err != nil {
			failed[p] = time.Now()
			s.log.Debug("probe", "peer", p, "err", err)
			continue
		}
		delete(failed, p)
		s.mu.Lock()
		s.probedAt[p] = time.Now()
		if old, ok := s.myRTT[p]; ok {
			// Smooth: one slow sample (a GC pause, a busy link) should not
			// reorder peers, a lasting change should within a few rounds.
			rtt = (old + rtt) / 2
		}
		s.myRTT[p] = rtt
		s.version++
		s.mu.Unlock()
	}
	for p, at := range failed {
		if now.Sub(at) > retry {
			delete(failed, p)
		}
	}
}
