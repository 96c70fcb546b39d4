package realtime_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// slowStart is a store whose first Snapshot (the hub's start position)
// waits until release is closed, as a busy database or a slow scheduler
// can make it wait.
type slowStart struct {
	api.Store
	once             sync.Once
	entered, release chan struct{}
}

func (s *slowStart) Snapshot(ctx context.Context, names []string) (int64, []api.Record, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.Store.Snapshot(ctx, names)
}

// TestStreamOpenedBeforeHubStarts: a stream opened while the hub is still
// taking its start position (the server already accepts connections) gets
// a write made meanwhile, with both writers. Streams used to start below
// the hub's position and lose the changes in between for good.
func TestStreamOpenedBeforeHubStarts(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			store := openStore(t)
			slow := &slowStart{Store: store, entered: make(chan struct{}), release: make(chan struct{})}
			hub := plainHub(slow, store.Bus())
			ctx := runHub(t, hub)
			<-slow.entered

			opened := make(chan (<-chan string), 1)
			go func() {
				s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Record: "doc"}}, "")
				if err != nil {
					t.Error(err)
					close(opened)
					return
				}
				opened <- readFrames(serve(t, s))
			}()
			time.Sleep(50 * time.Millisecond) // let the stream get as far as it can
			records := realtime.NewRecords(store, realtime.AllowAll{}, 1<<20)
			if _, err := records.Write(ctx, api.User{}, []realtime.Op{{Op: "put", Name: "doc", Data: []byte(`1`)}}); err != nil {
				t.Fatal(err)
			}
			close(slow.release)

			frames, ok := <-opened
			if !ok {
				return
			}
			if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
				t.Fatalf("first frame %q", got)
			}
			got := next(t, frames, true)
			if got == `snapshot {"name":"doc","version":0,"data":null}` {
				got = next(t, frames, true)
			}
			if !strings.Contains(got, `"version":1`) {
				t.Fatalf("the write made while the hub started never arrived: %q", got)
			}
		})
	}
}

// plainHub is a hub on store and bus that allows everything, with no
// heartbeat or lifetime to get in a test's way.
func plainHub(store api.Store, bus api.Bus) *realtime.Hub {
	return realtime.NewHub(store, bus, realtime.AllowAll{}, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// runHub runs hub until the test ends, and returns Run's context.
func runHub(t *testing.T, hub *realtime.Hub) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx
}
