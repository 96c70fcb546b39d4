package realtime

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
)

// writeConn is a countConn that also counts its Write calls: the system
// calls a real socket would take.
type writeConn struct {
	countConn
	writes atomic.Int64
}

func (c *writeConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.countConn.Write(p)
}

// BenchmarkFanOutWindow is BenchmarkFanOutPool with each coalescing
// window, and changes that come as a server's do: in groups (a group
// commit of 4 publishers' events) 1ms apart, rather than all at once.
// writes/frame counts the Write calls to the connections (system calls)
// per frame delivered: what the window saves. frames/s is bounded by the
// pace, not by the hub.
func BenchmarkFanOutWindow(b *testing.B) {
	for _, w := range []time.Duration{0, 250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond} {
		b.Run("W="+w.String(), func(b *testing.B) { benchFanOutWindow(b, w) })
	}
}

func benchFanOutWindow(b *testing.B, window time.Duration) {
	const subscribers, group = 1000, 4
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
		Coalesce: window,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	close(hub.started) // no Run: the benchmark dispatches itself
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pool sync.WaitGroup
	pool.Go(func() { hub.runPool(ctx) })
	conns := make([]*writeConn, subscribers)
	for i := range conns {
		s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Event: "bench/topic"}}, "")
		if err != nil {
			b.Fatal(err)
		}
		// ready (1 frame) then b.N events
		conns[i] = &writeConn{countConn: countConn{want: int64(b.N) + 1, done: make(chan struct{})}}
		if err := s.Detach(ctx, conns[i]); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range conns { // the ready frames
		for c.frames.Load() < 1 {
			time.Sleep(time.Millisecond)
		}
		c.writes.Store(0)
	}
	payload := []byte(`{"msg":"hello, subscribers"}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		ch := &api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: payload}
		hub.dispatch(ch)
		if n%group == group-1 {
			time.Sleep(time.Millisecond)
		}
	}
	var writes int64
	for _, c := range conns {
		<-c.done
		writes += c.writes.Load()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*subscribers)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(writes)/float64(b.N*subscribers), "writes/frame")
	hub.Drain()
	cancel()
	pool.Wait()
}
