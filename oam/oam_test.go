package oam

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:5080", true},
		{"127.0.0.2:0", true},
		{"[::1]:5080", true},
		{"localhost:1", true},
		{"0.0.0.0:5080", false},
		{"192.0.2.1:5080", false},
		{"example.com:80", false},
		{"127.0.0.1", false},
	} {
		err := CheckLoopback(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), tc.addr) {
			t.Errorf("error %q does not name %q", err, tc.addr)
		}
	}
}

func TestReadJSON(t *testing.T) {
	type req struct {
		Addr string `json:"addr"`
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"ok", `{"addr":"x"}`, ""},
		{"unknown field", `{"adr":"x"}`, "adr"},
		{"empty", ``, "empty"},
		{"trailing", `{"addr":"x"} {}`, "after the JSON object"},
		{"too big", `{"addr":"` + strings.Repeat("a", 100) + `"}`, "larger than 64 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			var v req
			err := ReadJSON(r, 64, &v)
			if tc.want == "" {
				if err != nil || v.Addr != "x" {
					t.Fatalf("got %+v, %v", v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A subscriber that does not read loses events instead of blocking Publish.
func TestEventsSlowSubscriberDoesNotBlock(t *testing.T) {
	e := NewEvents()
	ctx, cancel := context.WithCancel(context.Background())
	slow := e.Subscribe(ctx)
	fast := e.Subscribe(ctx)
	done := make(chan int)
	go func() {
		n := 0
		for range fast {
			n++
		}
		done <- n
	}()
	for i := 0; i < 1000; i++ {
		e.Publish(Event{Type: "x"})
	}
	if got := len(slow); got != cap(slow) {
		t.Fatalf("slow subscriber holds %d events, want its buffer full (%d)", got, cap(slow))
	}
	// Once it reads, it is told how many it missed before the next event.
	for range cap(slow) {
		<-slow
	}
	e.Publish(Event{Type: "y"})
	if ev := <-slow; ev.Type != "dropped" || ev.Data.(map[string]int)["count"] != 1000-cap(slow) {
		t.Fatalf("after the gap: %+v, want a dropped event counting %d", ev, 1000-cap(slow))
	}
	if ev := <-slow; ev.Type != "y" {
		t.Fatalf("after the dropped event: %+v", ev)
	}
	cancel()
	if n := <-done; n == 0 {
		t.Fatal("fast subscriber got nothing")
	}
	e.Close()
	e.Publish(Event{Type: "after close"}) // must not panic
}
