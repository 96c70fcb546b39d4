package realtime

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// recorder is a Sink that keeps what is written.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}
func (r *recorder) Flush() error { return nil }
func (r *recorder) Abort()       {}

// take returns what was written since the last take.
func (r *recorder) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.buf.String()
	r.buf.Reset()
	return out
}

// TestSideFramesOfRemovedSubscription: a frame pushed for a presence
// subscription that is then removed and added again, before the stream
// writes its queue, is dropped: the new subscription's state already says
// what holds, and the old frame, written after it, would contradict it or
// repeat it. It used to be written: frames were matched to subscriptions
// by value.
func TestSideFramesOfRemovedSubscription(t *testing.T) {
	f := newListenFixtureWith(t, time.Hour, false)
	p := NewPresence(nil, nil, AllowAll{}, PresenceConfig{Instance: "i"}, f.hub.log)
	f.hub.SetPresence(p, nil)
	ctx := context.Background()
	alice := api.Subscription{Presence: "alice"}
	s, err := f.hub.Open(ctx, api.User{}, []api.Subscription{alice}, "")
	if err != nil {
		t.Fatal(err)
	}
	out := &recorder{}
	s.sink = out
	f.hub.register(s)
	if err := s.watch(s.subs); err != nil {
		t.Fatal(err)
	}
	if got, want := out.take(), string(presenceFrame("alice", false)); got != want {
		t.Fatalf("state at subscription %q, want %q", got, want)
	}
	p.apply([]string{"alice"}) // queued for the subscription as it is
	s.control(streamChange{Stream: s.ID, Sub: alice})
	s.control(streamChange{Stream: s.ID, Sub: alice, Add: true})
	if err := s.applyControls(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.drainQueue(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := out.take(), string(presenceFrame("alice", true)); got != want {
		t.Fatalf("after the subscription was removed and added: %q, want only the new state %q", got, want)
	}
	p.apply(nil) // the new subscription is fed
	if err := s.drainQueue(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := out.take(), string(presenceFrame("alice", false)); got != want {
		t.Fatalf("a change after: %q, want %q", got, want)
	}
}
