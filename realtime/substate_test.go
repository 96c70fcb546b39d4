package realtime_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// TestConcurrentSubscriptionChanges: subscriptions added to one stream at
// the same time are all stored, and so are the removals. The hub used to
// read the stream's whole state and write it back, so that concurrent
// changes lost each other.
func TestConcurrentSubscriptionChanges(t *testing.T) {
	f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20})
	store, hub, ctx := f.store, f.hub, t.Context()
	user := api.User{ID: "u"}
	s, err := hub.Open(ctx, user, []api.Subscription{{Record: "a"}}, "")
	if err != nil {
		t.Fatal(err)
	}

	const n = 40
	change := func(add bool) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				x := api.Subscription{Record: fmt.Sprintf("rec/%02d", i)}
				if err := hub.ChangeSubscription(ctx, user, s.ID, x, add); err != nil {
					t.Errorf("ChangeSubscription(%v, add %v): %v", x, add, err)
				}
			})
		}
		wg.Wait()
	}
	change(true)
	info, err := store.GetStream(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Subs) != n+1 || info.Subs[0].Record != "a" {
		t.Fatalf("after %d concurrent adds the stream has %d subscriptions, want %d with a first: %+v", n, len(info.Subs), n+1, info.Subs)
	}
	change(false)
	if info, err = store.GetStream(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if len(info.Subs) != 1 || info.Subs[0].Record != "a" {
		t.Fatalf("after %d concurrent removals the stream has %+v, want a alone", n, info.Subs)
	}
}

// TestResumeRaceWithChange: a subscription added from elsewhere while a
// client resumes, after Open read the stored subscriptions and before the
// hub knew the stream, is kept in the store and reaches the live stream.
// Open used to write back what it had read, and the change, announced to
// no stream, was lost.
func TestResumeRaceWithChange(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20})
			ctx := t.Context()
			user := api.User{ID: "u"}
			first, err := f.hub.Open(ctx, user, []api.Subscription{{Record: "a"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			resumed, err := f.hub.Open(ctx, user, nil, first.ID+"-0")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.hub.ChangeSubscription(ctx, user, first.ID, api.Subscription{Record: "b"}, true); err != nil {
				t.Fatal(err)
			}
			frames := readFrames(serve(t, resumed))
			if _, err := f.records.Write(ctx, user, []realtime.Op{{Op: "put", Name: "b", Data: []byte(`7`)}}); err != nil {
				t.Fatal(err)
			}
			for {
				fr := next(t, frames, true)
				// A snapshot of b, or its change after a snapshot at 0.
				if strings.Contains(fr, `"name":"b"`) && strings.Contains(fr, `"data":7`) {
					break
				}
				if fr == "closed" {
					t.Fatal("the stream closed before a frame of b")
				}
			}
			info, err := f.store.GetStream(ctx, first.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Subs) != 2 {
				t.Fatalf("the stored stream has %+v, want a and b", info.Subs)
			}
		})
	}
}
