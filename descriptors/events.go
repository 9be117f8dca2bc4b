package descriptors

import "context"

// EventType says what happened to a descriptor in the cache.
type EventType string

// Event types.
const (
	EventAdded     EventType = "added"     // a slot we had not seen
	EventUpdated   EventType = "updated"   // a newer version replaced Prev
	EventExpired   EventType = "expired"   // it expired and left the cache
	EventRemoved   EventType = "removed"   // its owner (this node) stopped publishing it
	EventAnnounced EventType = "announced" // our own records reached the DHT (Desc = last of the batch)
)

// Event is one change to the set of known descriptors.
type Event struct {
	Type   EventType `json:"type"`
	Desc   *Signed   `json:"descriptor"`
	Prev   *Signed   `json:"prev,omitempty"`
	Source Source    `json:"source,omitempty"`
}

// eventBuffer is the per-subscriber buffer. A subscriber that falls this far
// behind loses events (counted and logged) rather than stalling the service;
// it can resynchronise with Snapshot.
const eventBuffer = 1024

// Subscribe returns a channel of changes until ctx is done or the service
// closes (then the channel is closed). Call Snapshot after subscribing to
// get the state the events apply to.
func (s *Service) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, eventBuffer)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
	})
	return ch
}

func (s *Service) emit(ev Event) {
	s.mu.Lock()
	s.emitLocked(ev)
	s.mu.Unlock()
}

func (s *Service) emitLocked(ev Event) {
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
			s.dropped++
			if s.dropped == 1 || s.dropped%1000 == 0 {
				s.log.Warn("descriptor event subscriber is not keeping up; events dropped", "dropped", s.dropped)
			}
		}
	}
}
