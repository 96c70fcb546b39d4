package realtime

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// countSink counts frames (data lines) and discards the bytes.
type countSink struct {
	frames atomic.Int64
	want   int64
	done   chan struct{}
	once   sync.Once
}

func (s *countSink) Write(p []byte) (int, error) {
	if len(p) > 6 && string(p[:6]) == "event:" {
		if s.frames.Add(1) == s.want {
			s.once.Do(func() { close(s.done) })
		}
	}
	return len(p), nil
}
func (s *countSink) Flush() error { return nil }
func (s *countSink) Abort()       {}

// BenchmarkFanOut measures the hub alone: one change handed to 1,000
// streams subscribed to its event name, through their queues and writers
// into sinks that discard the bytes. frames/s counts delivered frames.
func BenchmarkFanOut(b *testing.B) {
	const subscribers = 1000
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	close(hub.started) // no Run: the benchmark dispatches itself
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sinks := make([]*countSink, subscribers)
	var wg sync.WaitGroup
	for i := range sinks {
		s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Event: "bench/topic"}}, "")
		if err != nil {
			b.Fatal(err)
		}
		// ready (1 frame) then b.N events
		sinks[i] = &countSink{want: int64(b.N) + 1, done: make(chan struct{})}
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx, sinks[i]) }()
	}
	for hub.Stats.Streams.Load() != subscribers {
		time.Sleep(time.Millisecond)
	}
	payload := []byte(`{"msg":"hello, subscribers"}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		ch := &api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: payload}
		hub.dispatch(ch)
	}
	for _, s := range sinks {
		<-s.done
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*subscribers)/elapsed.Seconds(), "frames/s")
	cancel()
	wg.Wait()
}

// countConn is a Conn that counts frames (event lines) and discards the
// bytes, for streams served by the writer pool.
type countConn struct {
	frames atomic.Int64
	want   int64
	done   chan struct{}
	once   sync.Once
}

func (c *countConn) Write(p []byte) (int, error) {
	if c.frames.Add(int64(bytes.Count(p, []byte("event: ")))) >= c.want {
		c.once.Do(func() { close(c.done) })
	}
	return len(p), nil
}
func (c *countConn) SetWriteDeadline(time.Time) error { return nil }
func (c *countConn) Close() error                     { return nil }

// BenchmarkFanOutPool is BenchmarkFanOut with detached streams: one change
// handed to 1,000 streams served by the writer pool, through their queues
// into connections that discard the bytes.
func BenchmarkFanOutPool(b *testing.B) {
	const subscribers = 1000
	hub, ctx := poolHub(b, 0)
	conns := make([]*countConn, subscribers)
	for i := range conns {
		s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Event: "bench/topic"}}, "")
		if err != nil {
			b.Fatal(err)
		}
		// ready (1 frame) then b.N events
		conns[i] = &countConn{want: int64(b.N) + 1, done: make(chan struct{})}
		if err := s.Detach(ctx, conns[i]); err != nil {
			b.Fatal(err)
		}
	}
	payload := []byte(`{"msg":"hello, subscribers"}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		ch := &api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: payload}
		hub.dispatch(ch)
	}
	for _, c := range conns {
		<-c.done
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*subscribers)/elapsed.Seconds(), "frames/s")
}

// poolHub is a hub on a new embedded store whose writer pool runs (with
// the coalescing window given) but not Run: the benchmark dispatches
// itself. The hub drains and the pool stops when the benchmark ends.
func poolHub(b *testing.B, window time.Duration) (*Hub, context.Context) {
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
		Coalesce: window,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	close(hub.started)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.runPool(ctx); close(done) }()
	b.Cleanup(func() {
		hub.Drain()
		cancel()
		<-done
		store.Close()
	})
	return hub, ctx
}

// discard is a Sink and a Conn that drops the bytes.
type discard struct{}

func (discard) Write(p []byte) (int, error)      { return len(p), nil }
func (discard) Flush() error                     { return nil }
func (discard) Abort()                           {}
func (discard) SetWriteDeadline(time.Time) error { return nil }
func (discard) Close() error                     { return nil }

// benchStreams opens n streams subscribed to the event bench/topic on a
// hub that is not running: the benchmark dispatches itself.
func benchStreams(b testing.TB, n int) (*Hub, []*Stream) {
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	close(hub.started)
	streams := make([]*Stream, n)
	for i := range streams {
		if streams[i], err = hub.Open(context.Background(), api.User{}, []api.Subscription{{Event: "bench/topic"}}, ""); err != nil {
			b.Fatal(err)
		}
	}
	return hub, streams
}

// BenchmarkDispatch measures the hot path on one goroutine, so that the
// scheduler and other processes weigh little in it: one change handed to
// 1,000 streams (Hub.dispatch, Stream.push), then every stream's queue
// drained into a sink that drops the bytes, as Run does when woken.
func BenchmarkDispatch(b *testing.B) {
	hub, streams := benchStreams(b, 1000)
	ctx := context.Background()
	for _, s := range streams {
		s.sink = discard{}
		hub.register(s)
	}
	payload := []byte(`{"msg":"hello, subscribers"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		hub.dispatch(&api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: payload})
		for _, s := range streams {
			if err := s.drainQueue(ctx); err != nil {
				b.Fatal(err)
			}
			if err := s.flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDispatchPool is BenchmarkDispatch through the writer pool, on
// one goroutine: detached streams are put on the ready list by dispatch,
// taken from it and served as a writer does, onto connections that drop
// the bytes.
func BenchmarkDispatchPool(b *testing.B) {
	const subscribers = 1000
	hub, streams := benchStreams(b, subscribers)
	ctx := context.Background()
	for _, s := range streams {
		if err := s.Detach(ctx, discard{}); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]*Stream, 64)
	serveAll := func() {
		for served := 0; served < subscribers; {
			batch := hub.pool.next(ctx, buf)
			for _, s := range batch {
				hub.serve(ctx, s)
			}
			served += len(batch)
			clear(batch)
		}
	}
	serveAll() // Detach scheduled each stream
	payload := []byte(`{"msg":"hello, subscribers"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		hub.dispatch(&api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: payload})
		serveAll()
	}
}
