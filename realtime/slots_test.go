package realtime_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// slotHub runs a hub over an embedded store with the stream limits of
// cfg, until the test ends.
func slotHub(t *testing.T, maxStreams, perUser int) (*realtime.Hub, context.Context) {
	t.Helper()
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hub := realtime.NewHub(store, store.Bus(), realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
		MaxStreams: maxStreams, MaxStreamsPerUser: perUser,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return hub, ctx
}

// refusedBy checks that err is code, caused by limit.
func refusedBy(t *testing.T, what string, err error, code api.Code, limit realtime.Limit) {
	t.Helper()
	if l, ok := realtime.LimitOf(err); !api.IsCode(err, code) || !ok || l != limit {
		t.Fatalf("%s: %v (limit %q), want %s by %s", what, err, l, code, limit)
	}
}

// TestStreamSlots: a signed-in user holds at most MaxStreamsPerUser
// streams (LIMIT_EXCEEDED), the instance at most MaxStreams whoever holds
// them (UNAVAILABLE), anonymous streams count only in all; a stream gives
// its slot back when it ends after being served, or when abandoned, once.
func TestStreamSlots(t *testing.T) {
	hub, ctx := slotHub(t, 4, 2)
	alice, bob, anon := api.User{ID: "alice"}, api.User{ID: "bob"}, api.User{}
	subs := []api.Subscription{{Event: "e"}}
	open := func(u api.User) *realtime.Stream {
		t.Helper()
		s, err := hub.Open(ctx, u, subs, "")
		if err != nil {
			t.Fatalf("open for %q: %v", u.ID, err)
		}
		return s
	}
	a1, a2 := open(alice), open(alice)
	_, err := hub.Open(ctx, alice, subs, "")
	refusedBy(t, "alice's third stream", err, api.CodeLimitExceeded, realtime.LimitStreamsPerUser)
	open(bob)
	open(anon) // 4 in all: anonymous streams have no per-user bound, only the instance's
	_, err = hub.Open(ctx, bob, subs, "")
	refusedBy(t, "a fifth stream", err, api.CodeUnavailable, realtime.LimitStreams)
	_, err = hub.Open(ctx, anon, subs, "")
	refusedBy(t, "a fifth, anonymous stream", err, api.CodeUnavailable, realtime.LimitStreams)
	if all, mine := hub.OpenStreams("alice"); all != 4 || mine != 2 {
		t.Fatalf("OpenStreams: %d in all, %d of alice's; want 4 and 2", all, mine)
	}

	a1.Abandon()
	a1.Abandon() // once only
	if all, mine := hub.OpenStreams("alice"); all != 3 || mine != 1 {
		t.Fatalf("after an abandon: %d in all, %d of alice's; want 3 and 1", all, mine)
	}

	// A stream served and ended gives its slot back.
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- a2.Run(runCtx, discardSink{}) }()
	stop()
	<-ran
	if all, mine := hub.OpenStreams("alice"); all != 2 || mine != 0 {
		t.Fatalf("after a stream ended: %d in all, %d of alice's; want 2 and 0", all, mine)
	}
	open(alice)
	open(alice)

	// A refused open (bad subscriptions) takes nothing.
	if _, err := hub.Open(ctx, bob, []api.Subscription{{Record: "bad//name"}}, ""); err == nil {
		t.Fatal("open with an invalid name: no error")
	}
	if all, _ := hub.OpenStreams(""); all != 4 {
		t.Fatalf("after a refused open: %d in all, want 4", all)
	}
}

// TestStreamSlotsRace: many opens of one user at once, past the limit:
// exactly the limit get a stream, and once all are abandoned nothing is
// held.
func TestStreamSlotsRace(t *testing.T) {
	const limit, tries = 10, 60
	hub, ctx := slotHub(t, 0, limit)
	user := api.User{ID: "racer"}
	var (
		ok, refused atomic.Int64
		wg          sync.WaitGroup
		mu          sync.Mutex
		streams     []*realtime.Stream
	)
	for range tries {
		wg.Go(func() {
			s, err := hub.Open(ctx, user, []api.Subscription{{Event: "e"}}, "")
			switch {
			case err == nil:
				ok.Add(1)
				mu.Lock()
				streams = append(streams, s)
				mu.Unlock()
			case api.IsCode(err, api.CodeLimitExceeded):
				refused.Add(1)
			default:
				t.Errorf("open: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != limit || refused.Load() != tries-limit {
		t.Fatalf("%d opened, %d refused; want %d and %d", ok.Load(), refused.Load(), limit, tries-limit)
	}
	for _, s := range streams {
		wg.Go(s.Abandon)
	}
	wg.Wait()
	if all, mine := hub.OpenStreams("racer"); all != 0 || mine != 0 {
		t.Fatalf("after every abandon: %d held, %d of the user's", all, mine)
	}
}
