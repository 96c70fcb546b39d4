package realtime

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// writeConn is a countConn that also counts its Write calls: the system
// calls a real socket would take. It signals wrote, if set, at each.
type writeConn struct {
	countConn
	writes atomic.Int64
	wrote  chan struct{}
}

func (c *writeConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	n, err := c.countConn.Write(p)
	if c.wrote != nil {
		signal(c.wrote)
	}
	return n, err
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
	hub, ctx := poolHub(b, window)
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
}

// BenchmarkLoneEventDelay measures what the window costs a lone event:
// one change dispatched to one idle detached stream, then the time until
// its frame is written (delay-µs, the mean). On an idle process Go's
// timers wake no sooner than about 1ms, whatever the window below it.
func BenchmarkLoneEventDelay(b *testing.B) {
	for _, w := range []time.Duration{0, 250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond} {
		b.Run("W="+w.String(), func(b *testing.B) { benchLoneEvent(b, w) })
	}
}

func benchLoneEvent(b *testing.B, window time.Duration) {
	hub, ctx := poolHub(b, window)
	s, err := hub.Open(ctx, api.User{}, []api.Subscription{{Event: "bench/topic"}}, "")
	if err != nil {
		b.Fatal(err)
	}
	c := &writeConn{countConn: countConn{want: int64(b.N) + 1, done: make(chan struct{})}, wrote: make(chan struct{}, 1)}
	if err := s.Detach(ctx, c); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`1`)
	var waited time.Duration
	b.ResetTimer()
	for n := range b.N {
		for c.frames.Load() < int64(n)+1 { // the frame before, or the ready frame
			<-c.wrote
		}
		time.Sleep(2 * time.Millisecond) // idle again
		select {
		case <-c.wrote: // a signal left from the write before
		default:
		}
		start := time.Now()
		hub.dispatch(&api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: payload})
		<-c.wrote // the process idles until the frame is written, as a server does
		waited += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(waited.Microseconds())/float64(b.N), "delay-µs")
}
