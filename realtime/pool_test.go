package realtime

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// orderConn is a Conn that checks the positions of the frames written to
// it: each one after the last, none missing.
type orderConn struct {
	t    *testing.T
	mu   sync.Mutex // Write is called by one writer at a time; the lock is for the test's reads
	last int64
	want int64
	done chan struct{}
}

func (c *orderConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range bytes.Split(p, []byte("\n")) {
		id, ok := bytes.CutPrefix(line, []byte("id: "))
		if !ok {
			continue
		}
		seq, err := strconv.ParseInt(string(id[bytes.LastIndexByte(id, '-')+1:]), 10, 64)
		if err != nil || seq <= c.last {
			c.t.Errorf("id %q after position %d", id, c.last)
		}
		if c.last = seq; seq == c.want {
			close(c.done)
		}
	}
	return len(p), nil
}
func (c *orderConn) SetWriteDeadline(time.Time) error { return nil }
func (c *orderConn) Close() error                     { return nil }

// TestPoolDeliversEverything: changes dispatched to detached streams
// while the pool's writers serve them all arrive, in order. Pushes alone
// wake the streams at first: a wake-up lost between a writer handing a
// stream back and a push would leave the stream short, with nothing else
// to wake it. Then heartbeats and subscription changes wake the same
// streams too: two writers serving one stream at once would race (-race).
func TestPoolDeliversEverything(t *testing.T) {
	t.Run("pushes", func(t *testing.T) { testPoolDelivers(t, false) })
	t.Run("pings and controls", func(t *testing.T) { testPoolDelivers(t, true) })
}

func testPoolDelivers(t *testing.T, others bool) {
	const streams, changes = 20, 3000
	hub, list := benchStreams(t, streams)
	hub.cfg.Heartbeat = time.Hour
	if others {
		hub.cfg.Heartbeat = time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	poolDone := make(chan struct{})
	go func() { hub.runPool(ctx); close(poolDone) }()
	defer func() { hub.Drain(); cancel(); <-poolDone }()
	conns := make([]*orderConn, streams)
	for i, s := range list {
		conns[i] = &orderConn{t: t, last: -1, want: changes, done: make(chan struct{})} // the ready frame's id is position 0
		if err := s.Detach(ctx, conns[i]); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if others {
		wg.Go(func() { wakeWithControls(list, stop) })
	}
	for n := range changes {
		hub.dispatch(&api.Change{Seq: int64(n + 1), Kind: api.KindEvent, Name: "bench/topic", Data: []byte(`1`)})
		if n%4 == 0 {
			runtime.Gosched() // let writers hand streams back between pushes
		}
	}
	for i, c := range conns {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.mu.Lock()
			t.Errorf("stream %d stopped at position %d of %d (ended: %v, %v)", i, c.last, changes, list[i].ended(), list[i].err())
			c.mu.Unlock()
		}
	}
	close(stop)
	wg.Wait()
}

// wakeWithControls sends subscription changes that change nothing (the
// subscription is there already) to every stream until stop is closed:
// only wake-ups, and a few at a time, so that no stream is cut (errBusy).
func wakeWithControls(list []*Stream, stop <-chan struct{}) {
	for {
		for _, s := range list {
			s.mu.Lock()
			few := len(s.ctrl) < maxControls/4
			s.mu.Unlock()
			if few {
				s.control(streamChange{Stream: s.ID, Add: true, Sub: api.Subscription{Event: "bench/topic"}})
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// TestSetAsideProgress: a stream whose socket takes part of what waits is
// retried soon again, and its time without progress starts over; only a
// socket that takes nothing backs off, and is cut after maxBlocked.
func TestSetAsideProgress(t *testing.T) {
	h := &Hub{pool: newPool(0)}
	s := &Stream{hub: h}
	w := &s.det
	w.out = make([]byte, 1000)
	h.setAside(s)
	for _, left := range []int{900, 800, 700} { // a slow reader
		w.out = w.out[:left]
		h.setAside(s)
		if w.retries != 1 {
			t.Fatalf("after progress to %d bytes: retries %d, want 1", left, w.retries)
		}
	}
	for want := 2; want <= 6; want++ { // a reader that stopped
		h.setAside(s)
		if w.retries != want {
			t.Fatalf("without progress: retries %d, want %d", w.retries, want)
		}
	}
	w.out = w.out[:600]
	h.setAside(s)
	if w.retries != 1 {
		t.Fatalf("progress after a stop: retries %d, want 1", w.retries)
	}
}
