package oam

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Event is one node-wide happening, streamed to API clients as SSE: the SSE
// "event" field is Type and the "data" field is Data as JSON.
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Data any       `json:"data,omitempty"`
}

// Events is a fan-out bus. Publish never blocks: a subscriber that falls more
// than its buffer behind loses events, because a slow dashboard must not
// stall the node. Once it has room again it first gets a "dropped" event
// whose data is {"count": n}, so it knows to re-read whatever it shows.
type Events struct {
	mu     sync.Mutex
	subs   map[*sub]struct{}
	closed bool
}

type sub struct {
	ch      chan Event
	dropped int
}

// NewEvents returns an empty bus.
func NewEvents() *Events { return &Events{subs: map[*sub]struct{}{}} }

// Publish sends ev to every subscriber. A zero Time is set to now.
func (e *Events) Publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		if s.dropped > 0 {
			select {
			case s.ch <- Event{Type: "dropped", Time: ev.Time, Data: map[string]int{"count": s.dropped}}:
				s.dropped = 0
			default:
				s.dropped++
				continue
			}
		}
		select {
		case s.ch <- ev:
		default:
			s.dropped++
		}
	}
}

// Subscribe returns a channel of events closed when ctx ends or the bus closes.
func (e *Events) Subscribe(ctx context.Context) <-chan Event {
	s := &sub{ch: make(chan Event, 256)}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		close(s.ch)
		return s.ch
	}
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	context.AfterFunc(ctx, func() { e.remove(s) })
	return s.ch
}

func (e *Events) remove(s *sub) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.subs[s]; ok {
		delete(e.subs, s)
		close(s.ch)
	}
}

// Close closes every subscription.
func (e *Events) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for s := range e.subs {
		delete(e.subs, s)
		close(s.ch)
	}
}

// ServeSSE streams events from ch to w until ch closes or the client goes.
// A comment line is sent every 15s so proxies and idle clients keep the
// connection open.
func ServeSSE(w http.ResponseWriter, r *http.Request, ch <-chan Event) {
	fl, ok := w.(http.Flusher)
	if !ok {
		WriteError(w, http.StatusInternalServerError, fmt.Errorf("streaming not supported by this connection"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case ev, ok := <-ch:
			if !ok {
				return
			}
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
