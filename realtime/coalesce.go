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
// list is sorted by due time, and the writers need one timer (the head's)
// rather than one per stream.
//
// The delay is for deliveries only: a stream poked for other work (a
// subscription change, a heartbeat, its end, a drain) goes on the ready
// list at once, as does a stream that starts or whose full socket is
// retried. A stream already waiting in later when it is poked is served
// at its due time, at most W later. A lone delivery waits W, never for a
// second one. MaxCoalesce bounds W.

// MaxCoalesce is the largest coalescing window the hub accepts.
const MaxCoalesce = time.Millisecond

// pending is a stream waiting in later, and when it is due.
type pending struct {
	s   *Stream
	due time.Time
}

// scheduleLater puts streams on the later list, due after the window, or
// on the ready list at once when they were poked. The caller holds p.mu;
// wake reports that a writer must be woken: a stream is ready, or later
// was empty, so that no writer waits for its head.
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
			wake = true
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
		return max(p.later[k].due.Sub(now), time.Microsecond)
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

// timers holds the writers' idle timers, for waitFor.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// waitFor waits for a signal on p.wake, or for d to pass (d > 0: the head
// of later is due then), or for ctx to end; it reports false when ctx
// ended.
func (p *pool) waitFor(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-ctx.Done():
			return false
		case <-p.wake:
			return true
		}
	}
	t := timers.Get().(*time.Timer)
	t.Reset(d)
	defer func() { t.Stop(); timers.Put(t) }()
	select {
	case <-ctx.Done():
		return false
	case <-p.wake:
	case <-t.C:
	}
	return true
}
