package realtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// frameConn is a Conn that records what is written to it: the positions
// of the event frames, in order, each write's time, and whether the
// other frames the tests look for (a heartbeat, a retry hint) came.
type frameConn struct {
	mu     sync.Mutex
	seqs   []int64
	writes []time.Time
	out    bytes.Buffer
	closed bool
}

func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, time.Now())
	c.out.Write(p)
	for line := range bytes.SplitSeq(p, []byte("\n")) {
		if id, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			seq, err := strconv.ParseInt(string(id[bytes.LastIndexByte(id, '-')+1:]), 10, 64)
			if err != nil {
				seq = -1
			}
			c.seqs = append(c.seqs, seq)
		}
	}
	return len(p), nil
}
func (c *frameConn) SetWriteDeadline(time.Time) error { return nil }
func (c *frameConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// look calls f with the recorded state, under the lock.
func (c *frameConn) look(f func(c *frameConn)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// coalescingHub runs a hub over a fresh embedded store with a coalescing
// window, and returns it with its event service.
func coalescingHub(t *testing.T, window, heartbeat time.Duration) (*Hub, *Events) {
	t.Helper()
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hub := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: heartbeat, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 64 << 20,
		Coalesce: window,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Until Run has read an event, it may not listen yet: a commit between
	// its start position and its subscription to the Bus waits for the
	// next commit's wake-up.
	events := NewEvents(store, AllowAll{})
	warm, err := events.Publish(ctx, api.User{}, "warm-up", []byte(`0`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hub running", func() bool {
		hub.Wake()
		return hub.pos.Load() >= warm.Seq
	})
	return hub, events
}

// detachOn opens a detached stream subscribed to the event name on hub,
// written to a frameConn.
func detachOn(t *testing.T, hub *Hub, name string) (*Stream, *frameConn) {
	t.Helper()
	s, err := hub.Open(context.Background(), api.User{}, []api.Subscription{{Event: name}}, "")
	if err != nil {
		t.Fatal(err)
	}
	c := &frameConn{}
	if err := s.Detach(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return s, c
}

// waitFor polls cond until it holds, or fails the test after a deadline
// far longer than any window: it checks that something happens, not how
// fast.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
	}
}

// TestCoalesceLoneEvent: with a window, a lone event goes out without a
// second one to push it, and not before the window has passed since it
// was published (the delivery waited for company).
func TestCoalesceLoneEvent(t *testing.T) {
	hub, events := coalescingHub(t, MaxCoalesce, time.Hour)
	s, c := detachOn(t, hub, "lone")
	// Idle first: a writer that still serves the stream after its start
	// would take the event along, with no reason to wait.
	waitFor(t, "the stream handed back", func() bool {
		s.q.mu.Lock()
		defer s.q.mu.Unlock()
		return !s.q.held
	})
	var started int
	c.look(func(c *frameConn) { started = len(c.writes) }) // the ready frame
	published := time.Now()
	ch, err := events.Publish(context.Background(), api.User{}, "lone", []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	var at time.Time
	waitFor(t, "the lone event", func() (ok bool) {
		c.look(func(c *frameConn) {
			if ok = len(c.seqs) >= 2; ok {
				at = c.writes[started]
			}
		})
		return ok
	})
	c.look(func(c *frameConn) {
		if len(c.seqs) != 2 || c.seqs[1] != ch.Seq {
			t.Fatalf("ids %v, want the ready frame's and %d", c.seqs, ch.Seq)
		}
	})
	if waited := at.Sub(published); waited < MaxCoalesce {
		t.Fatalf("the event was written %v after its publish, within the window of %v: it did not wait", waited, MaxCoalesce)
	}
}

// TestCoalesceDeliversEverything: with a window, events from many
// publishers reach many detached streams all, exactly once, in the log's
// order, while heartbeats and subscription changes wake the same
// streams (-race: two writers serving one stream at once would race).
func TestCoalesceDeliversEverything(t *testing.T) {
	const streams, publishers, each = 30, 8, 150
	hub, events := coalescingHub(t, 500*time.Microsecond, time.Millisecond)
	list := make([]*Stream, streams)
	conns := make([]*frameConn, streams)
	for i := range list {
		list[i], conns[i] = detachOn(t, hub, "bench/topic")
	}
	stop := make(chan struct{})
	var controls sync.WaitGroup
	controls.Go(func() { wakeWithControls(list, stop) })
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for n := range each {
				if _, err := events.Publish(context.Background(), api.User{}, "bench/topic", fmt.Appendf(nil, `[%d,%d]`, p, n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	const total = publishers * each
	for i, c := range conns {
		waitFor(t, fmt.Sprintf("stream %d's %d events", i, total), func() (ok bool) {
			c.look(func(c *frameConn) { ok = len(c.seqs) >= total+1 }) // and the ready frame
			return ok
		})
	}
	close(stop)
	controls.Wait()
	time.Sleep(5 * MaxCoalesce) // a duplicate would come within the window
	for i, c := range conns {
		c.look(func(c *frameConn) {
			if len(c.seqs) != total+1 {
				t.Errorf("stream %d: %d frames with ids, want %d", i, len(c.seqs), total+1)
			}
			for j := 1; j < len(c.seqs); j++ {
				if c.seqs[j] <= c.seqs[j-1] {
					t.Errorf("stream %d: id %d after %d", i, c.seqs[j], c.seqs[j-1])
					break
				}
			}
			if list[i].ended() {
				t.Errorf("stream %d ended: %v", i, list[i].err())
			}
		})
	}
}

// TestCoalesceEnds: with a window, a stream with a delivery waiting for
// it still ends and is let go when it is revoked, and a drain still
// writes what waits, then the drain hint, and ends the stream.
func TestCoalesceEnds(t *testing.T) {
	hub, events := coalescingHub(t, MaxCoalesce, time.Hour)
	revoked, rc := detachOn(t, hub, "ends")
	drained, dc := detachOn(t, hub, "ends")
	ch, err := events.Publish(context.Background(), api.User{}, "ends", []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	// Queued for both streams, which wait for the window (or were just
	// taken): Publish returns once the event is durable, not dispatched.
	waitFor(t, "the event dispatched", func() bool { return hub.pos.Load() >= ch.Seq })
	revoked.end(errRevoked)
	hub.Drain()
	waitFor(t, "both streams ended and let go", func() bool { return hub.Stats.Streams.Load() == 0 })
	rc.look(func(c *frameConn) {
		if !c.closed {
			t.Error("the revoked stream's connection is open")
		}
	})
	dc.look(func(c *frameConn) {
		if len(c.seqs) != 2 || c.seqs[1] != ch.Seq {
			t.Errorf("drained stream: ids %v, want the ready frame's and %d", c.seqs, ch.Seq)
		}
		out := c.out.String()
		if i, j := bytes.LastIndex(c.out.Bytes(), []byte("id: ")), bytes.LastIndex(c.out.Bytes(), []byte("retry: ")); j < i {
			t.Errorf("drained stream: no retry hint after the event: %q", out)
		}
		if !c.closed {
			t.Error("the drained stream's connection is open")
		}
	})
	if !drained.ended() || drained.err() != nil {
		t.Errorf("drained stream: ended %v, err %v", drained.ended(), drained.err())
	}
}

// TestCoalesceHeartbeat: with a window, a stream with nothing to deliver
// still gets its heartbeats.
func TestCoalesceHeartbeat(t *testing.T) {
	hub, _ := coalescingHub(t, MaxCoalesce, 5*time.Millisecond)
	_, c := detachOn(t, hub, "quiet")
	waitFor(t, "two heartbeats", func() (ok bool) {
		c.look(func(c *frameConn) { ok = bytes.Count(c.out.Bytes(), []byte(": ping\n\n")) >= 2 })
		return ok
	})
}

// TestPoolSchedulesLater: with a window, a stream that deliveries make
// ready waits on the later list until due, while one poked for other
// work (controls, a heartbeat, its end) is ready at once; without a
// window, both are ready at once.
func TestPoolSchedulesLater(t *testing.T) {
	poked, plain := &Stream{}, &Stream{}
	poked.det.poke.Store(true)
	buf := make([]*Stream, 4)
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}

	p := newPool(time.Hour)
	p.schedule(plain, poked)
	if got := p.next(short(), buf); len(got) != 1 || got[0] != poked {
		t.Fatalf("with a window: first batch %v, want the poked stream alone", got)
	}
	if got := p.next(short(), buf); got != nil {
		t.Fatalf("with a window: the delivery did not wait (%v)", got)
	}
	p.mu.Lock()
	p.later[0].due = time.Now() // its window has passed
	p.mu.Unlock()
	if got := p.next(short(), buf); len(got) != 1 || got[0] != plain {
		t.Fatalf("with a window, once due: %v, want the stream", got)
	}

	p = newPool(0)
	p.schedule(plain, poked)
	if got := p.next(short(), buf); len(got) != 2 {
		t.Fatalf("without a window: %v, want both streams at once", got)
	}
}

// TestLaterStaysBounded: under steady traffic a stream always waits, so
// later never drains; its array must not keep every entry ever taken.
func TestLaterStaysBounded(t *testing.T) {
	p := newPool(time.Hour)
	s := &Stream{}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scheduleLater([]*Stream{s})
	for range 100000 {
		p.scheduleLater([]*Stream{s})
		for i := p.head; i < len(p.later)-1; i++ {
			p.later[i].due = time.Time{} // all due but the newest
		}
		if p.promote() == 0 {
			t.Fatal("later drained with a stream waiting")
		}
		clear(p.ready)
		p.ready = p.ready[:0]
	}
	if c := cap(p.later); c > 64 {
		t.Fatalf("later holds %d entries' room for %d waiting", c, len(p.later)-p.head)
	}
}
