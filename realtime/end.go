package realtime

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"
)

// How a stream ends. It has one end state (over, and its reason) and one
// way to reach it, end, which any goroutine may call any number of times:
// the first call decides why. What ends a stream:
//
//   - whoever serves it, for its own reasons: the client went, a write
//     failed, a frame could not be encoded, the lifetime of a stream
//     served by Run, a drain (nil or the error): Run, or the writer pool
//     for a detached stream, first writes the stream's drain hint;
//   - the hub: a queue that overflows (ErrSlow), a fan-out that fell
//     behind the log (errBehind), the end of a drain's wait (nil: the
//     streams whose hint could not be written in time);
//   - the stream's own controls: too many subscription changes waiting
//     (errBusy);
//   - the writer pool: the lifetime of a detached stream (nil), a socket
//     that takes nothing for maxBlocked (ErrSlow).
//
// Then whoever serves the stream stops (a detached stream's writer cleans
// up, Run returns) and the hub forgets it.

// ErrSlow ends a stream whose queue overflowed, or whose socket took
// nothing for too long: the client was too slow. Stats.SlowDisconnects
// counts the streams that end with it.
var ErrSlow = errors.New("stream cut: the client did not keep up")

var (
	errBusy   = errors.New("stream cut: subscription changes came faster than it took them")
	errBehind = errors.New("stream cut: the fan-out fell behind the retained change log")
)

// end ends the stream for reason (nil: a normal end), once: later calls
// do nothing. It interrupts whoever serves the stream: a write under way
// is aborted (a detached stream's connection closes), and whoever serves
// the stream is woken (Run's channel, or the pool for a detached stream)
// to see the end: Run returns, a detached stream's writer cleans up.
func (s *Stream) end(reason error) {
	s.endOnce.Do(func() {
		s.reason = reason
		s.over.Store(true)
		if reason == ErrSlow {
			s.hub.Stats.SlowDisconnects.Add(1)
		}
		// Abort under the lock: Run lets go of its sink under it before its
		// handler returns, after which the sink must not be touched.
		s.mu.Lock()
		if s.sink != nil {
			s.sink.Abort()
		}
		s.mu.Unlock()
		s.notify()
	})
}

// ended reports whether the stream has ended. It is one atomic load: the
// hub asks on every push, the pool on every serve.
func (s *Stream) ended() bool { return s.over.Load() }

// err returns why the stream ended: nil while it runs or after a normal end.
func (s *Stream) err() error {
	if !s.ended() {
		return nil
	}
	return s.reason
}

// lifetime is how long the stream stays open: MaxLifetime less up to 10%,
// so that streams opened together do not all come back together, and no
// longer than its user's token lasts. It sets s.deadline to when it is
// over, less slack: how late whatever ends the stream may come after the
// deadline (the lifetime drawn leaves room for it within the 10%, so that
// the stream still ends within MaxLifetime less up to 10%).
func (s *Stream) lifetime(slack time.Duration) time.Duration {
	limit := s.hub.cfg.MaxLifetime
	life := limit - rand.N(max(limit/10-slack, 0)+1)
	if exp := s.User.Expires; !exp.IsZero() {
		life = max(0, min(life, time.Until(exp)))
	}
	s.deadline = monoNow() + int64(life-slack)
	return life
}

// lookedAfter is the shortest lifetime that a detached stream leaves to
// watchHangups' looks rather than to a timer of its own (a variable for
// the tests).
var lookedAfter = time.Minute

// A draining hub ends every stream with a retry: line, its drain hint:
// how long the client waits before it connects again. The hints are
// spread uniformly over [DrainRetry, DrainRetry+DrainSpread], so that the
// streams of an instance do not all come back in the same second, and the
// shortest outlasts the restart of a single instance behind a proxy: a
// browser's EventSource that reconnects while no instance listens gets
// the proxy's 502 and gives up for good.

// DrainHint returns a drain hint, drawn anew at each call. It is also the
// Retry-After of a stream refused while the hub drains.
func (h *Hub) DrainHint() time.Duration {
	base := cmp.Or(h.cfg.DrainRetry, h.cfg.Retry)
	return base + rand.N(max(h.cfg.DrainSpread, 0)+1)
}

// appendRetry appends a retry: line of d, in whole milliseconds, and the
// blank line that ends it as an event of its own (one with no data,
// which a client does not dispatch).
func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// endDrained is the end of a stream served by Run when the hub drains:
// whatever is queued, then the drain hint. Run then ends the stream.
func (s *Stream) endDrained(ctx context.Context) error {
	if err := s.drainQueue(ctx); err != nil {
		return err
	}
	if _, err := s.sink.Write(appendRetry(nil, s.hub.DrainHint())); err != nil {
		return err
	}
	return s.flush()
}
