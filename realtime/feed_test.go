package realtime_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// testFeed is a Feed and an Observer that records what the hub tells it.
type testFeed struct {
	mu      sync.Mutex
	watched map[*realtime.Stream][]realtime.Watch
	opened  []string // user ids, in order
	closed  []string
}

func (f *testFeed) Watch(w realtime.Watch) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watched[w.Stream()] = append(f.watched[w.Stream()], w)
	return [][]byte{[]byte("event: presence\ndata: {\"user\":\"now\",\"online\":true}\n\n")}
}

func (f *testFeed) Unwatch(w realtime.Watch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watched[w.Stream()] = slices.DeleteFunc(f.watched[w.Stream()], func(y realtime.Watch) bool { return y == w })
}

func (f *testFeed) Opened(s *realtime.Stream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, s.User.ID)
}

func (f *testFeed) Closed(s *realtime.Stream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, s.User.ID)
}

// watching returns the side subscriptions of s that the feed watches.
func (f *testFeed) watching(s *realtime.Stream) []api.Subscription {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Subscription
	for _, w := range f.watched[s] {
		out = append(out, w.Subscription())
	}
	return out
}

// watch returns the feed's Watch of s's first side subscription.
func (f *testFeed) watch(t *testing.T, s *realtime.Stream) realtime.Watch {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.watched[s]) == 0 {
		t.Fatal("the feed watches nothing of the stream")
	}
	return f.watched[s][0]
}

// TestSideFrames: a presence subscription is watched once the stream
// starts, its state comes after the ready frame, pushed frames follow in
// order without an id, a frame pushed after the subscription is removed
// is not written, and the observer hears of the stream's start and end.
func TestSideFrames(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			feed := &testFeed{watched: make(map[*realtime.Stream][]realtime.Watch)}
			f := newFixture(t, realtime.HubConfig{
				Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
			}, func(h *realtime.Hub) { h.SetPresence(feed, feed) })
			ctx := context.Background()
			alice := api.User{ID: "alice"}
			presence := api.Subscription{Presence: "*"}
			s, err := f.hub.Open(ctx, alice, []api.Subscription{presence}, "")
			if err != nil {
				t.Fatal(err)
			}
			frames := readFrames(serve(t, s))
			if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") || !strings.Contains(got, `{"presence":"*"}`) {
				t.Fatalf("first frame %q", got)
			}
			if got := next(t, frames, true); got != `presence {"user":"now","online":true}` {
				t.Fatalf("the state at subscription: %q", got)
			}
			if got := feed.watching(s); !slices.Equal(got, []api.Subscription{presence}) {
				t.Fatalf("watched %v", got)
			}
			w := feed.watch(t, s)
			for _, u := range []string{"bob", "carol"} {
				w.Push([]byte("event: presence\ndata: {\"user\":\"" + u + "\",\"online\":true}\n\n"))
			}
			for _, u := range []string{"bob", "carol"} {
				if got := next(t, frames, true); got != `presence {"user":"`+u+`","online":true}` {
					t.Fatalf("pushed frame %q", got)
				}
			}

			// Removed: the feed lets go, and a frame pushed in the race is dropped.
			if err := f.hub.ChangeSubscription(ctx, alice, s.ID, presence, false); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return len(feed.watching(s)) == 0 })
			w.Push([]byte("event: presence\ndata: {\"user\":\"late\",\"online\":true}\n\n"))
			if err := f.hub.ChangeSubscription(ctx, alice, s.ID, api.Subscription{Event: "chat"}, true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return f.hub.Stats.Subscriptions.Load() == 1 })
			if _, err := f.events.Publish(ctx, alice, "chat", []byte(`1`)); err != nil {
				t.Fatal(err)
			}
			if got := next(t, frames, true); !strings.HasPrefix(got, `event {"name":"chat"`) {
				t.Fatalf("after the removal: %q", got)
			}

			// No feed serves listen subscriptions on this hub.
			err = f.hub.ChangeSubscription(ctx, alice, s.ID, api.Subscription{Listen: "prices/*"}, true)
			if !api.IsCode(err, api.CodeUnavailable) {
				t.Fatalf("listen without a feed: %v", err)
			}
			f.hub.Drain()
			waitFor(t, func() bool { return f.hub.Stats.Streams.Load() == 0 })
			feed.mu.Lock()
			defer feed.mu.Unlock()
			if !slices.Equal(feed.opened, []string{"alice"}) || !slices.Equal(feed.closed, []string{"alice"}) {
				t.Fatalf("observer: opened %v, closed %v", feed.opened, feed.closed)
			}
		})
	}
}

// TestSideSubscriptionsValidated: presence takes "*" or a user id, listen
// a prefix.
func TestSideSubscriptionsValidated(t *testing.T) {
	for _, c := range []struct {
		sub  api.Subscription
		code api.Code
	}{
		{api.Subscription{Presence: "*"}, ""},
		{api.Subscription{Presence: "alice@example.com"}, ""},
		{api.Subscription{Presence: "a\x00b"}, api.CodeInvalidParameter},
		{api.Subscription{Presence: strings.Repeat("a", 257)}, api.CodeInvalidParameter},
		{api.Subscription{Listen: "prices/*"}, ""},
		{api.Subscription{Listen: "prices"}, api.CodeInvalidName},
		{api.Subscription{Listen: "/*"}, api.CodeInvalidName},
	} {
		err := realtime.ValidateSubscription(c.sub)
		if (c.code == "" && err != nil) || (c.code != "" && !api.IsCode(err, c.code)) {
			t.Errorf("%+v: %v, want %q", c.sub, err, c.code)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
	}
}
