package realtime_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// gapBus is a store's Bus that calls before when Run subscribes to the
// changes topic, first: what before commits is announced to nobody.
type gapBus struct {
	api.Bus
	before func()
}

func (b gapBus) Subscribe(topic string, fn func([]byte)) func() {
	if topic == api.TopicChanges {
		b.before()
	}
	return b.Bus.Subscribe(topic, fn)
}

// TestRunCatchesUpAfterSubscribing: a stream that has started (its ready
// frame written) once Run has, but before Run listens to the Bus, gets an
// event published then, with no later change to wake the hub.
func TestRunCatchesUpAfterSubscribing(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			store, err := embedded.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			var hub *realtime.Hub
			started := make(chan (<-chan string), 1)
			bus := gapBus{Bus: store.Bus(), before: func() {
				defer close(started)
				s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Event: "gap"}}, "")
				if err != nil {
					t.Error(err)
					return
				}
				frames := readFrames(serve(t, s))
				select {
				case f := <-frames:
					if !strings.HasPrefix(f, "ready ") {
						t.Errorf("first frame %q", f)
						return
					}
				case <-time.After(5 * time.Second):
					t.Error("no ready frame in 5s")
					return
				}
				if _, err := store.Write(ctx, []api.Write{{Kind: api.KindEvent, Name: "gap", Data: []byte(`"in the gap"`)}}); err != nil {
					t.Error(err)
					return
				}
				started <- frames
			}}
			hub = realtime.NewHub(store, bus, realtime.AllowAll{}, realtime.HubConfig{
				Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
			}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			done := make(chan struct{})
			go func() { hub.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			frames, ok := <-started
			if !ok {
				t.FailNow()
			}
			if got := next(t, frames, true); !strings.HasPrefix(got, `event {"name":"gap","data":"in the gap"`) {
				t.Fatalf("want the event published before Run listened, got %q", got)
			}
		})
	}
}
