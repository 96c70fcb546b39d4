package realtime_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// nullConn is a socket that takes every byte and holds no memory of its
// own, so that a measure of streams over it counts the streams alone.
type nullConn struct{}

func (nullConn) Write(p []byte) (int, error)      { return len(p), nil }
func (nullConn) SetWriteDeadline(time.Time) error { return nil }
func (nullConn) Close() error                     { return nil }

// idleStreamBytes opens n detached streams of one event subscription
// each, as GET /stream?event=t{i%100} does, and returns the heap bytes
// they hold once started and idle, per stream.
func idleStreamBytes(t *testing.T, n int) float64 {
	f := newFixture(t, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	})
	ctx := context.Background()
	open := func(i int) *realtime.Stream {
		s, err := f.hub.Open(ctx, api.User{}, []api.Subscription{{Event: "t" + strconv.Itoa(i%100)}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Detach(ctx, nullConn{}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Warm up: the hub's maps and the store's pages for the first streams.
	warm := make([]*realtime.Stream, 0, n)
	for i := range n {
		warm = append(warm, open(i))
	}
	streams := make([]*realtime.Stream, 0, n)
	var before, after runtime.MemStats
	settle := func(m *runtime.MemStats) {
		// The store keeps what it wrote in memory until its checkpoint,
		// which a trim of nothing makes now: that is the store's, not
		// the streams'.
		if err := f.store.Trim(ctx, api.TrimOptions{}); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(m)
	}
	settle(&before)
	for i := range n {
		streams = append(streams, open(i))
	}
	for deadline := time.Now().Add(10 * time.Second); f.hub.Stats.Streams.Load() != int64(2*n); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams registered, want %d", f.hub.Stats.Streams.Load(), 2*n)
		}
	}
	// The pool serves each stream's first turn, which lets go of what its
	// start held: measure until the heap stops shrinking (a busy machine
	// may not have served them all yet), the least of a few measures.
	per := func() float64 {
		settle(&after)
		return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	}
	time.Sleep(50 * time.Millisecond)
	least := per()
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		m := per()
		if m >= least-8 {
			least = min(least, m)
			break
		}
		least = m
	}
	runtime.KeepAlive(streams)
	runtime.KeepAlive(warm)
	return least
}

// TestIdleStreamHeap: an idle detached stream holds at most
// maxIdleStreamBytes of heap, its socket aside. What it holds, in Go's
// size classes on 64-bit platforms: the Stream (480), its one
// subscription (128), its id (32), the slice of its subscriptions (8),
// its entries in the hub's maps (by id, in the pool's set of detached
// streams, in the index of its event name: 30-50 each, with the maps'
// growth): about 790 bytes. The bound leaves room for a field or two, not
// for a timer of its own (about 140: watchHangups ends its lifetime), a
// buffer, a channel, a closure, or the state of its start kept once it
// has started (each of which an idle stream held before, 1,630 bytes in
// all).
func TestIdleStreamHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of streams")
	}
	const maxIdleStreamBytes = 880
	got := idleStreamBytes(t, 2000)
	t.Logf("an idle stream holds %.0f heap bytes", got)
	if got > maxIdleStreamBytes {
		t.Fatalf("an idle stream holds %.0f heap bytes, want at most %d", got, maxIdleStreamBytes)
	}
}
