package realtime_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// countPuts is a store that counts the stream states it stores.
type countPuts struct {
	api.Store
	puts atomic.Int64
}

func (c *countPuts) PutStream(ctx context.Context, info api.StreamInfo) error {
	c.puts.Add(1)
	return c.Store.PutStream(ctx, info)
}

// TestMaxSubscriptions: a stream opened with more subscriptions than the
// limit is refused and nothing of it is stored; a subscription added past
// the limit is refused and the stream stays as it was.
func TestMaxSubscriptions(t *testing.T) {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	counted := &countPuts{Store: store}
	hub := realtime.NewHub(counted, store.Bus(), realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
		MaxSubscriptions: 2,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	user := api.User{ID: "u"}

	three := []api.Subscription{{Record: "a"}, {Record: "b"}, {Event: "c"}}
	if _, err := hub.Open(ctx, user, three, ""); !api.IsCode(err, api.CodeLimitExceeded) {
		t.Fatalf("open with 3 subscriptions, limit 2: %v, want LIMIT_EXCEEDED", err)
	}
	if n := counted.puts.Load(); n != 0 {
		t.Fatalf("a refused stream was stored (%d puts)", n)
	}

	s, err := hub.Open(ctx, user, three[:2], "")
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.ChangeSubscription(ctx, user, s.ID, api.Subscription{Record: "a"}, true); err != nil {
		t.Fatalf("adding a subscription the stream has: %v", err)
	}
	if err := hub.ChangeSubscription(ctx, user, s.ID, three[2], true); !api.IsCode(err, api.CodeLimitExceeded) {
		t.Fatalf("add a third subscription, limit 2: %v, want LIMIT_EXCEEDED", err)
	}
	info, err := store.GetStream(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Subs) != 2 || info.Subs[0].Record != "a" || info.Subs[1].Record != "b" {
		t.Fatalf("stored subscriptions after a refused add: %+v", info.Subs)
	}
	if err := hub.ChangeSubscription(ctx, user, s.ID, three[0], false); err != nil {
		t.Fatal(err)
	}
	if err := hub.ChangeSubscription(ctx, user, s.ID, three[2], true); err != nil {
		t.Fatalf("add after a removal: %v", err)
	}
}
