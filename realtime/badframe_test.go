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

// expectFrames reads the next frames (heartbeats skipped) and checks them
// in order.
func expectFrames(t *testing.T, frames <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := next(t, frames, true); got != w {
			t.Fatalf("got frame %.120q, want %q", got, w)
		}
	}
}

// TestOversizedFrameDeniesItsSubscriptions: a frame larger than a stream's
// buffer (data stored before the limits that prevent it) is never queued
// or written: the subscriptions it concerns get a PAYLOAD_TOO_LARGE denied
// frame and end, here and in the stored stream, and the stream's other
// subscriptions go on, with both writers. The same for a snapshot, at the
// start of the stream and when a subscription is added. A change's frame
// used to be let into an empty queue (and written whatever its size), and
// a snapshot was written whatever its size.
func TestOversizedFrameDeniesItsSubscriptions(t *testing.T) {
	big := json.RawMessage(`{"n":1,"pad":"` + strings.Repeat("x", 5000) + `"}`)
	const (
		deniedBig  = `denied {"subscription":{"record":"big"},"code":"PAYLOAD_TOO_LARGE"}`
		deniedEvt  = `denied {"subscription":{"event":"e"},"code":"PAYLOAD_TOO_LARGE"}`
		smallFrame = `record {"name":"small","version":2,"data":2,"op":"set"}`
	)
	subs := []api.Subscription{{Record: "big"}, {Record: "big", Path: "n"}, {Record: "small"}, {Event: "e"}}
	for name, serve := range writers {
		for _, when := range []string{"change", "snapshot", "added"} {
			t.Run(name+"/"+when, func(t *testing.T) {
				f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 4096})
				ctx := context.Background()
				putRaw(t, f.store, "small", json.RawMessage(`1`))
				open := subs
				if when != "change" {
					putRaw(t, f.store, "big", big)
				}
				if when == "added" {
					open = subs[1:]
				}
				s, err := f.hub.Open(ctx, api.User{}, open, "")
				if err != nil {
					t.Fatal(err)
				}
				frames := readFrames(serve(t, s))
				if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
					t.Fatalf("first frame %q", got)
				}
				switch when {
				case "change":
					expectFrames(t, frames,
						`snapshot {"name":"big","version":0,"data":null}`,
						`snapshot {"name":"big","version":0,"path":"n","data":null}`,
						`snapshot {"name":"small","version":1,"data":1}`)
					putRaw(t, f.store, "big", big)
					expectFrames(t, frames, deniedBig, `record {"name":"big","version":1,"path":"n","data":1,"op":"set"}`)
				case "snapshot":
					expectFrames(t, frames, deniedBig,
						`snapshot {"name":"big","version":1,"path":"n","data":1}`,
						`snapshot {"name":"small","version":1,"data":1}`)
				case "added":
					expectFrames(t, frames,
						`snapshot {"name":"big","version":1,"path":"n","data":1}`,
						`snapshot {"name":"small","version":1,"data":1}`)
					if err := f.hub.ChangeSubscription(ctx, api.User{}, s.ID, subs[0], true); err != nil {
						t.Fatal(err)
					}
					expectFrames(t, frames, deniedBig)
				}
				// The whole-record subscription has ended; the others go on.
				putRaw(t, f.store, "big", json.RawMessage(`{"n":1}`))
				putRaw(t, f.store, "small", json.RawMessage(`2`))
				expectFrames(t, frames, smallFrame)
				if _, err := f.events.Publish(ctx, api.User{}, "e", json.RawMessage(`"`+strings.Repeat("y", 5000)+`"`)); err != nil {
					t.Fatal(err)
				}
				if _, err := f.events.Publish(ctx, api.User{}, "e", json.RawMessage(`1`)); err != nil {
					t.Fatal(err)
				}
				expectFrames(t, frames, deniedEvt)
				putRaw(t, f.store, "small", json.RawMessage(`3`))
				expectFrames(t, frames, `record {"name":"small","version":3,"data":3,"op":"set"}`)

				if n := f.hub.Stats.SlowDisconnects.Load(); n != 0 || f.hub.Stats.Streams.Load() != 1 {
					t.Fatalf("slow disconnects %d, open streams %d", n, f.hub.Stats.Streams.Load())
				}
				info, err := f.store.GetStream(ctx, s.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(info.Subs) != 2 || info.Subs[0].Path != "n" || info.Subs[1].Record != "small" {
					t.Fatalf("stored subscriptions %+v", info.Subs)
				}
			})
		}
	}
}
