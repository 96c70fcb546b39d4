package realtime_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// deepJSON is valid JSON nested one level deeper than encoding/json
// accepts: a record stored before writes were bounded in depth.
var deepJSON = json.RawMessage(strings.Repeat("[", 10001) + strings.Repeat("]", 10001))

// putRaw stores data as a record's value as it is, past every check of
// the records service, as a record written by an older version may be.
func putRaw(t *testing.T, store api.Store, name string, data json.RawMessage) {
	t.Helper()
	_, err := store.Write(context.Background(), []api.Write{{
		Kind: api.KindSet, Name: name,
		Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return data, nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// waitStreams waits until the hub counts n open streams.
func waitStreams(t *testing.T, hub *realtime.Hub, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); hub.Stats.Streams.Load() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub counts %d open streams, want %d", hub.Stats.Streams.Load(), n)
		}
	}
}

// waitClosed reads frames until the connection ends, failing on a frame
// of the given event.
func waitClosed(t *testing.T, frames <-chan string, not string) {
	t.Helper()
	for {
		got := next(t, frames, true)
		if got == "closed" {
			return
		}
		if strings.HasPrefix(got, not+" ") {
			t.Fatalf("got a %s frame: %.80s", not, got)
		}
	}
}

// TestUnencodableSnapshotEndsStream: a stored record that cannot be
// encoded as a snapshot (too deep for encoding/json) ends the stream that
// asks for it, through the normal end: its connection closes and the hub
// forgets it, with both writers, whether the record is subscribed at the
// start or added to the open stream. It used to panic: a detached stream
// kept its socket and its registration forever, and a subscription added
// to a stream of the writer pool took the whole process down.
func TestUnencodableSnapshotEndsStream(t *testing.T) {
	cfg := realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20}
	for name, serve := range writers {
		t.Run(name+"/open", func(t *testing.T) {
			f := newFixture(t, cfg)
			putRaw(t, f.store, "deep", deepJSON)
			s, err := f.hub.Open(context.Background(), api.User{}, []api.Subscription{{Record: "deep"}, {Event: "e"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			waitClosed(t, readFrames(serve(t, s)), "snapshot")
			waitStreams(t, f.hub, 0)
		})
		t.Run(name+"/add", func(t *testing.T) {
			f := newFixture(t, cfg)
			putRaw(t, f.store, "deep", deepJSON)
			ctx := context.Background()
			s, err := f.hub.Open(ctx, api.User{}, []api.Subscription{{Event: "e"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			frames := readFrames(serve(t, s))
			if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
				t.Fatalf("first frame %q", got)
			}
			if err := f.hub.ChangeSubscription(ctx, api.User{}, s.ID, api.Subscription{Record: "deep"}, true); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, frames, "snapshot")
			waitStreams(t, f.hub, 0)
			if n := f.hub.Stats.Subscriptions.Load(); n != 0 {
				t.Fatalf("%d subscriptions still indexed", n)
			}
		})
	}
}
