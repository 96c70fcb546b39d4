package realtime

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// How a stream ends. It has one end state (over, and its reason) and one
// way to reach it, end, which any goroutine may call any number of times:
// the first call decides why. What ends a stream:
//
//   - whoever serves it, for its own reasons: the client went, a write
//     failed, a frame could not be encoded, the lifetime of a stream
//     served by Run, a drain seen by Run (nil or the error);
//   - the hub: a queue that overflows (ErrSlow), a fan-out that fell
//     behind the log (errBehind), a drain of detached streams (nil);
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
// longer than its user's token lasts.
func (s *Stream) lifetime() time.Duration {
	limit := s.hub.cfg.MaxLifetime
	life := limit - rand.N(limit/10+1)
	if exp := s.User.Expires; !exp.IsZero() {
		life = max(0, min(life, time.Until(exp)))
	}
	s.deadline = time.Now().Add(life)
	return life
}

// Wait waits until every stream has ended and let go of the store, or
// ctx ends: after Drain, the server calls it before it closes the store,
// so that no stream writes its state to a closed store.
func (h *Hub) Wait(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for h.Stats.Streams.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d streams still open: %w", h.Stats.Streams.Load(), ctx.Err())
		case <-t.C:
		}
	}
	done := make(chan struct{})
	go func() {
		h.ending.Wait()
		close(done)
	}()
	select {
	case <-ctx.Done():
		return fmt.Errorf("streams still storing their state: %w", ctx.Err())
	case <-done:
		return nil
	}
}
