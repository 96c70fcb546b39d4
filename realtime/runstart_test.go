package realtime_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
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
			store := openStore(t)
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
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
			hub = plainHub(store, bus)
			runHub(t, hub)
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
