package realtime

import (
	"context"
	"sync"
	"time"
)

// Coalescing. With a window W (HubConfig.Coalesce), a detached stream
// that a delivery makes ready is written no earlier than W after it was
// scheduled, so that the frames of the next changes join it and one
// system call carries them all: fewer writes for the server, and fewer
// reads for the client. The pool keeps those streams in a second list,
// later, in the order they came: every entry waits the same W, so the
// list is sorted by due time, and one goroutine (keepTime) with one timer
// (the head's) serves them all, rather than a timer per stream.
//
// The delay is for deliveries only: a stream poked for other work (a
// subscription change, a heartbeat, its end, a drain) goes on the ready
// list at once, as does a stream that starts or whose full socket is
// retried. A stream already waiting in later when it is poked is served
// at its due time, at most W later. A lone delivery waits W, never for a
// second one. MaxCoalesce bounds W.

// MaxCoalesce is the largest coalescing window the configuration accepts
// (STREAM_COALESCE): a delivery never waits longer for company.
const MaxCoalesce = time.Millisecond

// pending is a stream waiting in later, and when it is due.
type pending struct {
	s   *Stream
	due time.Time
}

// scheduleLater puts streams on the later list, due after the window, or
// on the ready list at once when they were poked. The caller holds p.mu;
// wake reports that a stream is ready, and a writer must be woken.
func (p *pool) scheduleLater(streams []*Stream) (wake bool) {
	var due time.Time
	for _, s := range streams {
		if s.det.poke.Load() {
			p.ready = append(p.ready, s)
			wake = true
			continue
		}
		if due.IsZero() {
			due = time.Now().Add(p.window)
		}
		if len(p.later) == p.head {
			signal(p.tick) // keepTime waits for the head
		}
		p.later = append(p.later, pending{s: s, due: due})
	}
	return wake
}

// promote moves the streams of later that are due onto the ready list,
// and returns how long until the next one is (0: later is empty). The
// caller holds p.mu.
func (p *pool) promote() time.Duration {
	if len(p.later) == p.head {
		return 0
	}
	now := time.Now()
	k := p.head
	for k < len(p.later) && !p.later[k].due.After(now) {
		p.ready = append(p.ready, p.later[k].s)
		k++
	}
	clear(p.later[p.head:k])
	p.head = k
	if k < len(p.later) {
		// Under steady traffic later never drains: once the entries
		// taken make up half of it, the rest moves to the front, so that
		// the array stays about twice what waits (amortised O(1)).
		if p.head > len(p.later)/2 {
			n := copy(p.later, p.later[p.head:])
			clear(p.later[n:])
			p.later, p.head = p.later[:n], 0
		}
		return max(p.later[p.head].due.Sub(now), time.Microsecond)
	}
	// Drained: the array is filled again from its start, and kept unless
	// a burst made it large.
	p.later, p.head = p.later[:0], 0
	if cap(p.later) > maxLater {
		p.later = nil
	}
	return 0
}

// maxLater bounds the array that later keeps for reuse, in streams.
const maxLater = 4096

// keepTime wakes the writers when the streams of later are due, until
// ctx ends: it sleeps until the head of later is due, moves what is due
// to the ready list, and waits for later to fill again when it is empty.
// One goroutine, with one kernel timer, serves every stream.
func (h *Hub) keepTime(ctx context.Context) {
	p := h.pool
	sl := newSleeper()
	defer func() { sl.Close() }()
	stop := context.AfterFunc(ctx, func() { sl.Close() }) // ends a sleep
	for {
		p.mu.Lock()
		until := p.promote()
		ready := len(p.ready) > 0
		p.mu.Unlock()
		if ready {
			signal(p.wake)
		}
		if until <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.tick:
			}
			continue
		}
		if err := sl.sleep(until); err != nil {
			if !stop() {
				return // ctx ended and closed the sleeper
			}
			// The kernel's timer failed: Go's timers, late when the
			// process idles, rather than streams that wait for nothing.
			h.log.Warn("coalescing: the kernel timer failed; using Go's timers", "err", err)
			sl.Close()
			sl = newTimerSleeper()
			stop = context.AfterFunc(ctx, func() { sl.Close() })
		}
	}
}

// A sleeper waits for a duration; Close ends its wait with an error.
type sleeper interface {
	sleep(d time.Duration) error
	Close() error
}

// timerSleeper is a sleeper on a Go timer.
type timerSleeper struct {
	t    *time.Timer
	done chan struct{}
	once sync.Once
}

func newTimerSleeper() sleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSleeper{t: t, done: make(chan struct{})}
}

func (s *timerSleeper) sleep(d time.Duration) error {
	s.t.Reset(d)
	select {
	case <-s.t.C:
		return nil
	case <-s.done:
		s.t.Stop()
		return context.Canceled
	}
}

func (s *timerSleeper) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}
