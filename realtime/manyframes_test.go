package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// largest records the largest single write a stream makes to its client.
type largest struct {
	mu  sync.Mutex
	max int
}

func (l *largest) saw(n int) {
	l.mu.Lock()
	l.max = max(l.max, n)
	l.mu.Unlock()
}

func (l *largest) get() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max
}

// countingConn is a socket that records its largest write (the pool's).
type countingConn struct {
	net.Conn
	l *largest
}

func (c countingConn) Write(p []byte) (int, error) {
	c.l.saw(len(p))
	return c.Conn.Write(p)
}

// countingSink is a pipeSink that records its largest flush (Run's).
type countingSink struct {
	pipeSink
	l *largest
}

func (c *countingSink) Flush() error {
	c.mu.Lock()
	c.l.saw(len(c.b))
	c.mu.Unlock()
	return c.pipeSink.Flush()
}

// countedWriters serve a stream as writers do, recording the largest write.
var countedWriters = map[string]func(t *testing.T, s *realtime.Stream, l *largest) io.Reader{
	"goroutine": func(t *testing.T, s *realtime.Stream, l *largest) io.Reader {
		r, w := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(func() { cancel(); r.Close() })
		go func() { w.CloseWithError(s.Run(ctx, &countingSink{pipeSink: pipeSink{w: w}, l: l})) }()
		return r
	},
	"pool": func(t *testing.T, s *realtime.Stream, l *largest) io.Reader {
		server, client := tcpPair(t)
		t.Cleanup(func() { server.Close(); client.Close() })
		go func() {
			if err := s.Detach(context.Background(), countingConn{Conn: server, l: l}); err != nil {
				server.Close()
			}
		}()
		return client
	},
}

// TestManyFrames: a start that makes many frames (path subscriptions of
// many large fields of one record) is written out as it goes, each write
// at most about the stream's buffer, rather than gathered whole: a client
// that reads gets every snapshot. A change never makes more frames for a
// stream than its buffer holds: the subscriptions past it are denied
// (PAYLOAD_TOO_LARGE), in order, and the others go on. The same
// subscription named twice is one: one snapshot, one frame a change.
func TestManyFrames(t *testing.T) {
	for name, serve := range countedWriters {
		t.Run(name, func(t *testing.T) {
			const (
				buffer = 64 << 10
				fields = 20
				size   = 8 << 10
			)
			f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: buffer, Coalesce: 20 * time.Millisecond})
			value := func(v string) json.RawMessage {
				m := map[string]string{}
				for i := range fields {
					m[fmt.Sprint("f", i)] = v + strings.Repeat("x", size)
				}
				b, _ := json.Marshal(m)
				return b
			}
			putRaw(t, f.store, "big", value("a"))
			var subs []api.Subscription
			for i := range fields {
				subs = append(subs, api.Subscription{Record: "big", Path: fmt.Sprint("f", i)})
			}
			subs = append(subs, subs[3], subs[0]) // named twice: one subscription
			s, err := f.hub.Open(context.Background(), api.User{ID: "u"}, subs, "")
			if err != nil {
				t.Fatal(err)
			}
			var l largest
			frames := readFrames(serve(t, s, &l)) // reads as it comes
			ready := next(t, frames, true)
			var r struct{ Subscriptions []api.Subscription }
			if err := json.Unmarshal([]byte(strings.TrimPrefix(ready, "ready ")), &r); err != nil || len(r.Subscriptions) != fields {
				t.Fatalf("ready frame %.200s: %d subscriptions, want %d (%v)", ready, len(r.Subscriptions), fields, err)
			}
			seen := map[string]bool{}
			for range fields {
				got := next(t, frames, true)
				var d struct{ Path, Data string }
				if !strings.HasPrefix(got, "snapshot ") || json.Unmarshal([]byte(got[len("snapshot "):]), &d) != nil || !strings.HasPrefix(d.Data, "axxx") || seen[d.Path] {
					t.Fatalf("got %.80s, want the snapshot of a field not seen yet", got)
				}
				seen[d.Path] = true
			}
			if got := l.get(); got > buffer+size+1024 {
				t.Errorf("the largest write of the start was %d bytes, want at most the buffer (%d) and a frame", got, buffer)
			}

			// A change of every field: record frames in the subscriptions' order
			// up to the buffer, then denied frames for the rest.
			change := func(v string, kept int) int {
				t.Helper()
				putRaw(t, f.store, "big", value(v))
				records, bytes := 0, 0
				for i := range kept {
					got := next(t, frames, true)
					path := fmt.Sprint("f", i)
					var d struct {
						Path, Data   string
						Subscription api.Subscription
						Code         string
					}
					switch event, data, _ := strings.Cut(got, " "); {
					case json.Unmarshal([]byte(data), &d) != nil:
						t.Fatalf("frame %.80s", got)
					case event == "record" && d.Path == path && strings.HasPrefix(d.Data, v+"xxx") && records == i:
						records++
						bytes += len(data)
					case event == "denied" && d.Subscription.Path == path && d.Code == "PAYLOAD_TOO_LARGE" && records > 0:
					default:
						t.Fatalf("frame %d of the change: %.100s, want the record frame of %s, or after some its denied frame", i, got, path)
					}
				}
				if bytes > buffer || records == kept && kept == fields {
					t.Errorf("the change wrote %d bytes of %d record frames for a buffer of %d", bytes, records, buffer)
				}
				return records
			}
			kept := change("b", fields)
			if again := change("c", kept); again != kept {
				t.Errorf("the next change: %d record frames, want %d (the subscriptions that went on)", again, kept)
			}
			// A burst of such changes, committed together and queued
			// together (the pool's coalescing window): written out past
			// twice the buffer, not gathered whole.
			{
				var ws []api.Write
				for i := range 6 {
					data := value(fmt.Sprint("d", i))
					ws = append(ws, api.Write{Kind: api.KindSet, Name: "big",
						Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return data, nil }})
				}
				if _, err := f.store.Write(context.Background(), ws); err != nil {
					t.Fatal(err)
				}
				for range 6 * kept {
					if got := next(t, frames, true); !strings.HasPrefix(got, "record ") {
						t.Fatalf("in the burst: %.80s", got)
					}
				}
				if got := l.get(); got > 3*buffer+size+1024 {
					t.Errorf("the largest write of a burst was %d bytes, want at most about three buffers (%d)", got, 3*buffer)
				}
			}
			if realtime.StreamEnded(s) {
				t.Errorf("the stream ended: %v", realtime.StreamErr(s))
			}
			t.Logf("%d of %d path subscriptions went on", kept, fields)
		})
	}
}

// TestManyFramesKeepWholeRecords: the per-change bound counts a path
// frame with those before it, but the frame that whole-record
// subscriptions share alone: a whole record that fits the buffer is never
// denied for the path frames beside it, wherever it stands among the
// subscriptions.
func TestManyFramesKeepWholeRecords(t *testing.T) {
	const buffer = 64 << 10
	f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: buffer})
	value := func(v string) json.RawMessage { // about 50 kB, under g
		m := map[string]string{}
		for i := range 10 {
			m[fmt.Sprint("f", i)] = v + strings.Repeat("x", 5<<10)
		}
		b, _ := json.Marshal(map[string]any{"g": m})
		return b
	}
	putRaw(t, f.store, "big", value("a"))
	subs := []api.Subscription{{Record: "big", Path: "g"}}
	for i := range 10 {
		subs = append(subs, api.Subscription{Record: "big", Path: fmt.Sprint("g.f", i)})
	}
	subs = append(subs, api.Subscription{Record: "big"}) // last: after the path frames
	s, err := f.hub.Open(context.Background(), api.User{ID: "u"}, subs, "")
	if err != nil {
		t.Fatal(err)
	}
	var l largest
	frames := readFrames(countedWriters["pool"](t, s, &l))
	next(t, frames, true) // ready
	for range subs {
		if got := next(t, frames, true); !strings.HasPrefix(got, "snapshot ") {
			t.Fatalf("got %.80s, want a snapshot", got)
		}
	}
	for _, v := range []string{"b", "c"} {
		putRaw(t, f.store, "big", value(v))
		whole, denied := false, 0
		for !whole {
			got := next(t, frames, true)
			event, data, _ := strings.Cut(got, " ")
			var d struct {
				Path         string
				Subscription api.Subscription
			}
			json.Unmarshal([]byte(data), &d)
			switch {
			case event == "record" && d.Path == "":
				whole = true
			case event == "denied" && d.Subscription.Path == "":
				t.Fatalf("change %s: the whole record's subscription was denied: %s", v, data)
			case event == "denied" && v == "c":
				t.Fatalf("change %s: %s denied again", v, d.Subscription.Path)
			case event == "denied":
				denied++
			case event != "record" && event != "denied":
				t.Fatalf("change %s: %.80s", v, got)
			}
		}
		if v == "b" && denied == 0 {
			t.Fatal("no path subscription was denied: the frames fit the buffer, and the test tests nothing")
		}
	}
}
