package descriptors

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Gossip only reaches nodes that are listening when a descriptor is
// announced, and descriptors are re-announced every TTL/2 (12 h by default).
// A node that joins later catches up with one bulk read: when a peer joins
// our descriptor topic, and while we have synced from fewer than syncPeers
// peers, we ask it for every live descriptor it knows over SyncProtocol and
// verify each one as if it had come by gossip. Existing nodes have long
// finished their syncs, so a newcomer is asked by nobody and asks at most
// syncPeers neighbours.

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
)

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
	snap := s.Snapshot()
	if len(snap) > MaxSyncDescriptors {
		snap = snap[:MaxSyncDescriptors]
	}
	w := bufio.NewWriterSize(st, 32<<10)
	total := 0
	for _, sd := range snap {
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

// syncLoop watches the topic for joining peers and syncs from the first
// syncPeers of them.
func (s *Service) syncLoop(h *pubsub.TopicEventHandler) {
	defer s.wg.Done()
	defer h.Cancel()
	done := 0
	tried := map[peer.ID]bool{}
	for done < syncPeers {
		ev, err := h.NextPeerEvent(s.ctx)
		if err != nil {
			return
		}
		if ev.Type != pubsub.PeerJoin || tried[ev.Peer] || ev.Peer == s.h.ID() {
			continue
		}
		tried[ev.Peer] = true
		if err := s.syncFrom(s.ctx, ev.Peer); err != nil {
			s.log.Debug("descriptor sync", "peer", ev.Peer, "err", err)
			continue
		}
		done++
	}
}
