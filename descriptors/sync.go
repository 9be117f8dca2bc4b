package descriptors

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Gossip only reaches nodes that are listening when a descriptor is
// announced (and, rarely, misses one outside the mesh), and descriptors are
// re-announced only every TTL/2 (12 h by default). Two catch-ups close the
// gap, both over SyncProtocol:
//
//   - at join: when a peer joins our descriptor topic, and while we have
//     synced from fewer than syncPeers peers, we ask it;
//   - anti-entropy: every resync interval we ask one random topic peer.
//
// The asker sends a digest (slot, seq) of what it already has; the answer
// holds only the live descriptors the asker lacks or has older, each
// verified on arrival as if it had come by gossip. Existing nodes have
// finished their join syncs, so a newcomer is asked by nobody at join.
//
// Wire: request = uvarint n, then n × (uvarint len, slot CID bytes, uvarint
// seq); the asker then closes its write side. Answer = frames of uvarint
// len + envelope bytes until EOF.

// SyncProtocol is the stream protocol for the catch-up read.
const SyncProtocol = protocol.ID("/daitn/descriptors/sync/1.0.0")

// SourceSync marks descriptors learnt from a neighbour's catch-up answer.
const SourceSync Source = "sync"

// Limits of one sync answer.
const (
	MaxSyncDescriptors = 4096
	MaxSyncBytes       = 32 << 20
	syncPeers          = 3
	syncTimeout        = 30 * time.Second
	maxSlotBytes       = 128
)

// readDigest reads a sync request: what the asker has, slot -> seq.
func readDigest(r *bufio.Reader) (map[string]uint64, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("sync digest: %w: %v", ErrMalformed, err)
	}
	if n > MaxSyncDescriptors {
		return nil, fmt.Errorf("sync digest: %w: %d entries (limit %d)", ErrSyncLimit, n, MaxSyncDescriptors)
	}
	have := make(map[string]uint64, n)
	for i := uint64(0); i < n; i++ {
		l, err := binary.ReadUvarint(r)
		if err != nil || l == 0 || l > maxSlotBytes {
			return nil, fmt.Errorf("sync digest entry %d: %w: slot length", i, ErrMalformed)
		}
		slot := make([]byte, l)
		if _, err := io.ReadFull(r, slot); err != nil {
			return nil, fmt.Errorf("sync digest entry %d: %w: %v", i, ErrMalformed, err)
		}
		seq, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("sync digest entry %d: %w: seq: %v", i, ErrMalformed, err)
		}
		have[string(slot)] = seq
	}
	return have, nil
}

// writeDigest writes a sync request for what we have.
func writeDigest(w io.Writer, have []*Signed) error {
	if len(have) > MaxSyncDescriptors {
		have = have[:MaxSyncDescriptors]
	}
	b := binary.AppendUvarint(nil, uint64(len(have)))
	for _, sd := range have {
		sb := sd.Slot.Bytes()
		b = binary.AppendUvarint(b, uint64(len(sb)))
		b = append(b, sb...)
		b = binary.AppendUvarint(b, sd.Seq)
	}
	_, err := w.Write(b)
	return err
}

// ErrSyncLimit is wrapped when a sync answer exceeds a limit.
var ErrSyncLimit = errors.New("sync answer exceeds limit")

func (s *Service) handleSync(st network.Stream) {
	defer st.Close()
	if err := st.Scope().SetService("daitn-descriptors"); err != nil {
		st.Reset()
		return
	}
	if err := st.Scope().ReserveMemory(64<<10, network.ReservationPriorityLow); err != nil {
		st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(64 << 10)
	_ = st.SetDeadline(time.Now().Add(syncTimeout))
	have, err := readDigest(bufio.NewReaderSize(io.LimitReader(st, MaxSyncDescriptors*(maxSlotBytes+20)+16), 4096))
	if err != nil {
		s.log.Debug("bad sync request", "peer", st.Conn().RemotePeer(), "err", err)
		st.Reset()
		return
	}
	snap := s.Snapshot()
	w := bufio.NewWriterSize(st, 32<<10)
	total, sent := 0, 0
	for _, sd := range snap {
		if seq, ok := have[string(sd.Slot.Bytes())]; ok && seq >= sd.Seq {
			continue
		}
		if sent++; sent > MaxSyncDescriptors {
			break
		}
		if total += len(sd.Raw); total > MaxSyncBytes {
			break
		}
		var hdr [binary.MaxVarintLen64]byte
		n := binary.PutUvarint(hdr[:], uint64(len(sd.Raw)))
		if _, err := w.Write(hdr[:n]); err != nil {
			st.Reset()
			return
		}
		if _, err := w.Write(sd.Raw); err != nil {
			st.Reset()
			return
		}
	}
	if err := w.Flush(); err != nil {
		st.Reset()
	}
}

// ReadSyncAnswer reads length-prefixed envelopes from r, verifies each with
// Open at now and calls fn for the valid ones. It stops at the first frame
// that breaks a limit or fails verification (a peer that sends garbage is
// not asked to continue) and returns how many were accepted.
func ReadSyncAnswer(r io.Reader, now time.Time, fn func(*Signed)) (int, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	n, total := 0, 0
	for i := 0; ; i++ {
		l, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("sync frame %d: %w: %v", i, ErrMalformed, err)
		}
		if i >= MaxSyncDescriptors {
			return n, fmt.Errorf("sync: %w: more than %d descriptors", ErrSyncLimit, MaxSyncDescriptors)
		}
		if l > MaxEnvelopeSize {
			return n, fmt.Errorf("sync frame %d: %w: %d bytes (limit %d)", i, ErrOversized, l, MaxEnvelopeSize)
		}
		if total += int(l); total > MaxSyncBytes {
			return n, fmt.Errorf("sync: %w: more than %d bytes", ErrSyncLimit, MaxSyncBytes)
		}
		buf := make([]byte, l)
		if _, err := io.ReadFull(br, buf); err != nil {
			return n, fmt.Errorf("sync frame %d: %w: truncated: %v", i, ErrMalformed, err)
		}
		sd, err := OpenAt(buf, now)
		if err != nil {
			if errors.Is(err, ErrExpired) {
				continue // it expired in flight: stale, not hostile
			}
			return n, fmt.Errorf("sync frame %d: %w", i, err)
		}
		fn(sd)
		n++
	}
}

// syncFrom reads p's live descriptors into our cache.
func (s *Service) syncFrom(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	st, err := s.h.NewStream(ctx, p, SyncProtocol)
	if err != nil {
		return fmt.Errorf("sync from %s: %w", p, err)
	}
	defer st.Close()
	if err := st.Scope().SetService("daitn-descriptors"); err != nil {
		st.Reset()
		return fmt.Errorf("sync from %s: %w", p, err)
	}
	_ = st.SetDeadline(time.Now().Add(syncTimeout))
	if err := writeDigest(st, s.Snapshot()); err != nil {
		st.Reset()
		return fmt.Errorf("sync from %s: send digest: %w", p, err)
	}
	_ = st.CloseWrite()
	n, err := ReadSyncAnswer(st, s.now(), func(sd *Signed) {
		if s.ingest(sd, SourceSync) {
			s.ctr.synced.Add(1)
		}
	})
	if err != nil {
		st.Reset()
		return fmt.Errorf("sync from %s after %d descriptors: %w", p, n, err)
	}
	s.log.Debug("synced descriptors", "from", p, "count", n)
	return nil
}

// syncLoop syncs from the first syncPeers peers that join the topic, and
// every resync interval from one random topic peer.
func (s *Service) syncLoop(h *pubsub.TopicEventHandler) {
	defer s.wg.Done()
	defer h.Cancel()
	joins := make(chan peer.ID, 16)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(joins)
		for {
			ev, err := h.NextPeerEvent(s.ctx)
			if err != nil {
				return
			}
			if ev.Type != pubsub.PeerJoin || ev.Peer == s.h.ID() {
				continue
			}
			select {
			case joins <- ev.Peer:
			default: // a burst of joins: the first ones are enough
			}
		}
	}()
	done := 0
	tried := map[peer.ID]bool{}
	tick := time.NewTicker(s.cfg.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case p, ok := <-joins:
			if !ok {
				return
			}
			if done >= syncPeers || tried[p] {
				continue
			}
			tried[p] = true
			if err := s.syncFrom(s.ctx, p); err != nil {
				s.log.Debug("descriptor sync", "peer", p, "err", err)
				continue
			}
			done++
		case <-tick.C:
			peers := s.topic.ListPeers()
			if len(peers) == 0 {
				continue
			}
			p := peers[mrand.IntN(len(peers))]
			if err := s.syncFrom(s.ctx, p); err != nil {
				s.log.Debug("descriptor anti-entropy", "peer", p, "err", err)
			}
		}
	}
}
