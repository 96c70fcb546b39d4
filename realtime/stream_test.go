package realtime_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// pipeSink is a Sink over one end of a pipe, for the goroutine-per-stream
// writer (Run); the other end is read by the test.
type pipeSink struct {
	mu sync.Mutex
	w  *io.PipeWriter
	b  []byte
}

func (p *pipeSink) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.b = append(p.b, b...)
	return len(b), nil
}

func (p *pipeSink) Flush() error {
	p.mu.Lock()
	b := p.b
	p.b = nil
	p.mu.Unlock()
	_, err := p.w.Write(b)
	return err
}

func (p *pipeSink) Abort() { p.w.CloseWithError(io.ErrClosedPipe) }

type fixture struct {
	store   *embedded.Store // for writes that bypass the services' checks
	hub     *realtime.Hub
	records *realtime.Records
	events  *realtime.Events
}

// newFixture starts a hub over a new embedded store, after setup (if
// any) has made its settings.
func newFixture(t *testing.T, cfg realtime.HubConfig, setup ...func(*realtime.Hub)) *fixture {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hub := realtime.NewHub(store, store.Bus(), realtime.AllowAll{}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, f := range setup {
		f(hub)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{store: store, hub: hub, records: realtime.NewRecords(store, realtime.AllowAll{}, 1<<20), events: realtime.NewEvents(store, realtime.AllowAll{})}
}

// serveFunc starts a stream with one of the two writers and returns what
// the client reads.
type serveFunc func(t *testing.T, s *realtime.Stream) io.Reader

// writers are the two ways a stream is written: its own goroutine (HTTP/2
// and anything that cannot be hijacked) and the writer pool (HTTP/1).
var writers = map[string]serveFunc{
	"goroutine": func(t *testing.T, s *realtime.Stream) io.Reader {
		r, w := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(func() { cancel(); r.Close() })
		go func() { // as the HTTP handler returning ends the response
			err := s.Run(ctx, &pipeSink{w: w})
			w.CloseWithError(err)
		}()
		return r
	},
	"pool": func(t *testing.T, s *realtime.Stream) io.Reader {
		server, client := net.Pipe()
		t.Cleanup(func() { client.Close() })
		go func() {
			if err := s.Detach(context.Background(), server); err != nil {
				server.Close()
			}
		}()
		return client
	},
}

// readFrames returns the frames read, as "event data" strings.
func readFrames(r io.Reader) <-chan string {
	out := make(chan string, 1024)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[7:]
			case strings.HasPrefix(line, "data: "):
				out <- event + " " + line[6:]
			case line == ": ping":
				out <- "ping"
			}
		}
	}()
	return out
}

func next(t *testing.T, frames <-chan string, skipPings bool) string {
	t.Helper()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return "closed"
			}
			if f == "ping" && skipPings {
				continue
			}
			return f
		case <-time.After(5 * time.Second):
			t.Fatal("no frame in 5s")
		}
	}
}

// TestWriters runs one scenario through both writers: snapshot, changes in
// order, events, heartbeats, and the end of the stream's lifetime.
func TestWriters(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, realtime.HubConfig{
				Heartbeat: 50 * time.Millisecond, MaxLifetime: 1500 * time.Millisecond,
				Retry: time.Second, BufferBytes: 1 << 20,
			})
			ctx := context.Background()
			user := api.User{}
			put := func(data string) {
				if _, err := f.records.Write(ctx, user, []realtime.Op{{Op: "put", Name: "doc", Data: []byte(data)}}); err != nil {
					t.Fatal(err)
				}
			}
			put(`{"n":0}`)
			opened := time.Now()
			s, err := f.hub.Open(ctx, user, []api.Subscription{{Record: "doc"}, {Event: "chat/*"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			frames := readFrames(serve(t, s))
			if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
				t.Fatalf("first frame %q", got)
			}
			if got := next(t, frames, true); got != `snapshot {"name":"doc","version":1,"data":{"n":0}}` {
				t.Fatalf("snapshot %q", got)
			}
			// One batch: 20 changes in order, one commit, well within the
			// lifetime however slow the disk.
			var ops []realtime.Op
			for i := 1; i <= 20; i++ {
				ops = append(ops, realtime.Op{Op: "put", Name: "doc", Data: []byte(`{"n":` + string(rune('0'+i%10)) + `}`)})
			}
			if _, err := f.records.Write(ctx, user, ops); err != nil {
				t.Fatal(err)
			}
			if _, err := f.events.Publish(ctx, user, "chat/lobby", []byte(`"hi"`)); err != nil {
				t.Fatal(err)
			}
			for i := 2; i <= 21; i++ {
				got := next(t, frames, true)
				if !strings.HasPrefix(got, `record {"name":"doc","version":`) || !strings.Contains(got, `"version":`+strconv.Itoa(i)+`,`) {
					t.Fatalf("frame %d: %q", i, got)
				}
			}
			if got := next(t, frames, true); !strings.HasPrefix(got, `event {"name":"chat/lobby","data":"hi"`) {
				t.Fatalf("event frame %q", got)
			}
			if got := next(t, frames, false); got != "ping" {
				t.Fatalf("want a heartbeat, got %q", got)
			}
			// The lifetime (less up to 10%) ends the stream: not before
			// it, and (with heartbeats flowing meanwhile) not never.
			for next(t, frames, true) != "closed" {
				if time.Since(opened) > 30*time.Second {
					t.Fatal("the stream is open 30s after it opened; its lifetime is 1.5s")
				}
			}
			if lived := time.Since(opened); lived < 1350*time.Millisecond {
				t.Fatalf("the stream closed %v after it opened; its lifetime is 1.5s less up to 10%%", lived)
			}
		})
	}
}

// TestSlowClientIsCut: a client that reads nothing is cut once its queue
// overflows, with both writers, and the hub counts it.
func TestSlowClientIsCut(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, realtime.HubConfig{
				Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 4096,
			})
			ctx := context.Background()
			s, err := f.hub.Open(ctx, api.User{}, []api.Subscription{{Event: "big"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			r := serve(t, s)
			buf := make([]byte, 1)
			if _, err := io.ReadFull(r, buf); err != nil { // the stream has started
				t.Fatal(err)
			}
			payload := []byte(`"` + strings.Repeat("x", 1000) + `"`)
			for i := 0; i < 200 && f.hub.Stats.SlowDisconnects.Load() == 0; i++ {
				if _, err := f.events.Publish(ctx, api.User{}, "big", payload); err != nil {
					t.Fatal(err)
				}
			}
			for deadline := time.Now().Add(5 * time.Second); f.hub.Stats.Streams.Load() != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("slow stream still open; slow disconnects %d", f.hub.Stats.SlowDisconnects.Load())
				}
			}
			if f.hub.Stats.SlowDisconnects.Load() == 0 {
				t.Fatal("no slow disconnect counted")
			}
		})
	}
}
