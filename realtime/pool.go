package realtime

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is the raw connection of a detached stream: in practice a net.Conn
// taken over from the HTTP server once the response head is written.
type Conn interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
	Close() error
}

// How long one write may wait for a full socket before the stream is set
// aside and retried.
const (
	writeSlice   = 2 * time.Millisecond
	retryBlocked = 20 * time.Millisecond // doubled at each retry, up to 64 times
	maxBlocked   = 10 * time.Second      // a client that takes no bytes this long is gone
	startTimeout = 10 * time.Second
)

// detached is the part of a stream that the writer pool serves, and the
// stream's Sink: frames are gathered in out and written in one call.
//
// One goroutine at a time holds a detached stream and serves it: the
// caller of Detach while the stream starts, then a writer of the pool.
// The stream's queue says whether someone holds the stream or it waits
// on the ready list (queue.held): whoever claims it so, by a push or by
// notify, puts it on the list, and the holder releases it when it hands
// the stream back (handBack), then looks again for work other than
// deliveries that came meanwhile (poke). The writer that finds the
// stream ended cleans it up and keeps holding it, so that nobody serves
// it again. The holder owns the fields below that say so, with no lock:
// the pool's lock (on the ready list) and the queue's pass them from one
// holder to the next.
//
// A detached is part of its Stream, not a pointer: push, on the hub's hot
// path, reads conn next to the stream's queue.
type detached struct {
	poke atomic.Bool // set by notify: work other than deliveries (controls, a heartbeat, the end); cleared by the holder
	ping atomic.Bool // a heartbeat is due: set by the pool's ticker, cleared by the holder

	conn Conn        // set by Detach before the stream is registered (nil: served by Run); closed by the stream's end (Abort), from any goroutine
	life *time.Timer // ends the stream at the end of a short lifetime (Detach); nil for the others; stopped by cleanup

	out       []byte    // holder: bytes not yet written
	blocking  bool      // holder: the stream starts, and a flush may wait for the socket
	blockedAt time.Time // holder: since when the socket has taken nothing of out
	retries   int       // holder: flushes retried since then
	left      int       // holder: len(out) when the stream was last set aside
	hinted    bool      // holder: the drain hint is in out, or written (serveDrain)
}

// pool serves detached streams from a few writer goroutines: a stream with
// something to write is put on the ready list once, and one writer at a
// time drains its queue and writes everything in one system call. An idle
// detached stream costs no goroutine, only its state and its socket. With
// a coalescing window, a stream that deliveries make ready waits on the
// later list first (coalesce.go).
type pool struct {
	window time.Duration // the coalescing window; 0: none. Read-only

	mu       sync.Mutex
	ready    []*Stream
	later    []pending // from head on: streams due after the window, oldest first (coalesce.go)
	head     int
	wake     chan struct{}
	tick     chan struct{} // wakes keepTime: later was empty (coalesce.go)
	detached map[*Stream]struct{}
}

// newPool returns a pool that coalesces deliveries for window (0: never).
func newPool(window time.Duration) *pool {
	return &pool{window: window, wake: make(chan struct{}, 1), tick: make(chan struct{}, 1), detached: make(map[*Stream]struct{})}
}

// schedule puts streams on the ready list, or on the later list when the
// pool coalesces (coalesce.go); each must have been marked scheduled by
// its caller, so that it is on a list at most once.
func (p *pool) schedule(streams ...*Stream) {
	if p.window <= 0 {
		p.scheduleNow(streams...)
		return
	}
	p.mu.Lock()
	wake := p.scheduleLater(streams)
	p.mu.Unlock()
	if wake {
		signal(p.wake)
	}
}

// scheduleNow puts streams on the ready list, whatever the window: a
// stream that starts, or whose full socket is retried, has waited enough.
func (p *pool) scheduleNow(streams ...*Stream) {
	p.mu.Lock()
	p.ready = append(p.ready, streams...)
	p.mu.Unlock()
	signal(p.wake)
}

// next moves up to len(buf) ready streams into buf, waiting for one, and
// returns them; nil when ctx ends. Taking a batch keeps the writers and
// the fan-out from contending on the lock once per stream. Streams of the
// later list join the ready list once due (keepTime wakes a writer then).
func (p *pool) next(ctx context.Context, buf []*Stream) []*Stream {
	for {
		p.mu.Lock()
		p.promote()
		if n := len(p.ready); n > 0 {
			k := copy(buf, p.ready)
			clear(p.ready[:k])
			p.ready = p.ready[k:]
			if n > k {
				signal(p.wake) // let another writer take the rest
			}
			p.mu.Unlock()
			return buf[:k]
		}
		p.ready = nil // drop the drained backing array
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		}
	}
}

// each calls f for every detached stream.
func (p *pool) each(f func(*Stream)) {
	for _, s := range p.list(nil) {
		f(s)
	}
}

// filter returns the detached streams that keep says to: a copy, so that
// the caller works on them without the lock.
func (p *pool) filter(keep func(*Stream) bool) []*Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Stream
	for s := range p.detached {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// list appends every detached stream to buf and returns it: a copy, so
// that the caller works on them without the lock.
func (p *pool) list(buf []*Stream) []*Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	buf = slices.Grow(buf, len(p.detached))
	for s := range p.detached {
		buf = append(buf, s)
	}
	return buf
}

// runPool runs the writers, the heartbeat and the hangup watch
// (hangup.go) of detached streams.
func (h *Hub) runPool(ctx context.Context) {
	go h.watchHangups(ctx)
	if h.pool.window > 0 {
		go h.keepTime(ctx)
	}
	for range max(2, runtime.GOMAXPROCS(0)) {
		go func() {
			buf := make([]*Stream, 64)
			for batch := h.pool.next(ctx, buf); batch != nil; batch = h.pool.next(ctx, buf) {
				for _, s := range batch {
					h.serve(ctx, s)
				}
				clear(batch)
			}
		}()
	}
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	var list []*Stream
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		list = h.pool.list(list[:0])
		spread(ctx, list, min(h.cfg.Heartbeat/2, time.Second), func(s *Stream) {
			s.det.ping.Store(true)
			s.notify()
		})
		clear(list)
	}
}

// Detach serves the stream on conn without a goroutine of its own: it
// writes the start of the stream (ready, snapshots or missed frames) on the
// caller's goroutine, then hands the stream to the writer pool and returns.
// The stream owns conn from then on and closes it when it ends.
func (s *Stream) Detach(ctx context.Context, conn Conn) error {
	h := s.hub
	w := &s.det
	w.conn, w.blocking = conn, true
	// Held by this goroutine until it hands the stream to the pool, so
	// that a push meanwhile does not put it on the list.
	s.q.claim()
	s.sink = w
	h.register(s)
	err := s.start(ctx)
	if err == nil {
		err = s.flush()
	}
	if err != nil {
		s.end(err)
		h.unregister(s)
		return s.err()
	}
	w.blocking = false
	// A lifetime of the usual length ends at a look of watchHangups,
	// without a timer's memory, its deadline early by as much as a look
	// may come late. A short one, or one that its token's expiry may end,
	// has a timer and ends on time.
	late := h.lookEvery() * 3 / 2
	exp, limit := s.User.Expires, h.cfg.MaxLifetime
	if limit-limit/10 >= lookedAfter && (exp.IsZero() || time.Until(exp) > limit+late) {
		s.lifetime(late)
	} else {
		w.life = time.AfterFunc(s.lifetime(0), func() { s.end(nil) })
	}
	h.pool.mu.Lock()
	h.pool.detached[s] = struct{}{}
	h.pool.mu.Unlock()
	// On the list before it is scheduled: a drain that does not find it
	// there began before, and its first serve sees the drain.
	h.pool.scheduleNow(s)
	return nil
}

// serve does what a detached stream has waiting. The caller holds the
// stream: serve hands it back, sets it aside while its socket is full,
// or cleans it up once it has ended.
func (h *Hub) serve(ctx context.Context, s *Stream) {
	if s.ended() {
		h.cleanup(s)
		return
	}
	if h.Draining() {
		h.serveDrain(ctx, s)
		return
	}
	if err := s.writeWaiting(ctx); err != nil {
		h.fail(s, err)
		return
	}
	if len(s.det.out) > 0 {
		h.setAside(s)
		return
	}
	h.handBack(s)
}

// writeWaiting writes what waits for a detached stream: subscription
// changes and a heartbeat when poked, and the queued changes. While bytes
// of an earlier flush wait for the socket it only retries them: new
// frames stay in the queue, whose limit cuts a client that does not
// catch up.
func (s *Stream) writeWaiting(ctx context.Context) error {
	w := &s.det
	if len(w.out) == 0 {
		ping := false
		// Only a poke brings work other than deliveries. Load first: the
		// common serve, for deliveries alone, writes nothing here.
		if w.poke.Load() && w.poke.Swap(false) {
			ping = w.ping.Swap(false)
			if err := s.applyControls(ctx); err != nil {
				return err
			}
		}
		if err := s.drainQueue(ctx); err != nil {
			return err
		}
		if ping {
			w.out = append(w.out, ": ping\n\n"...)
		}
	}
	return s.flush()
}

// serveDrain ends a detached stream of a draining hub: it writes what the
// stream has queued, then its drain hint (end.go), and ends the stream
// once its socket has taken them. A socket that is full is retried as
// serve retries it (setAside), until maxBlocked or the end of the drain's
// wait (WaitStreams) ends the stream without its hint.
func (h *Hub) serveDrain(ctx context.Context, s *Stream) {
	w := &s.det
	if !w.hinted {
		w.hinted = true
		if len(w.out) == 0 { // else frames wait for the socket: the hint follows them
			if err := s.drainQueue(ctx); err != nil {
				h.fail(s, err)
				return
			}
		}
		w.out = appendRetry(w.out, h.DrainHint())
	}
	if err := s.flush(); err != nil {
		h.fail(s, err)
		return
	}
	if len(w.out) > 0 {
		h.setAside(s)
		return
	}
	s.end(nil)
	h.cleanup(s)
}

// handBack gives up a stream with nothing left to write, so that the
// next push or notify schedules it again; whatever came meanwhile, it
// schedules itself (deliveries after the coalescing window).
func (h *Hub) handBack(s *Stream) {
	w := &s.det
	// Before the release: then another writer may take the stream.
	w.blockedAt, w.retries = time.Time{}, 0
	if !s.q.release() || (w.poke.Load() && s.q.claim()) {
		h.pool.schedule(s)
	}
}

// setAside keeps a stream whose socket is full, and serves it again
// later, less often each time it takes nothing. A client that takes some
// of what waits is retried at once again (it reads slowly, but reads); one
// that takes nothing for maxBlocked is cut (ErrSlow).
func (h *Hub) setAside(s *Stream) {
	w := &s.det
	progressed := len(w.out) < w.left // out only shrinks while it waits
	w.left = len(w.out)
	switch {
	case w.blockedAt.IsZero() || progressed:
		w.blockedAt, w.retries = time.Now(), 0
	case time.Since(w.blockedAt) > maxBlocked:
		s.end(ErrSlow)
		h.cleanup(s)
		return
	}
	w.retries = min(w.retries+1, 6)
	time.AfterFunc(retryBlocked<<(w.retries-1), func() { h.pool.scheduleNow(s) })
}

// fail ends a detached stream whose writer failed. Most failures are a
// client gone, not worth a line; a frame that cannot be encoded is the
// data's fault, logged once here (the start of a stream returns its
// errors to the HTTP handler, which logs them).
func (h *Hub) fail(s *Stream, err error) {
	if _, ok := errors.AsType[*encodeError](err); ok {
		h.log.Warn("stream ended", "stream", s.ID, "err", err)
	}
	s.end(err)
	h.cleanup(s)
}

// cleanup lets go of an ended detached stream. The writer that holds the
// stream calls it, once: an ended stream is never handed back (it stays
// scheduled), so no writer serves it again.
func (h *Hub) cleanup(s *Stream) {
	if s.det.life != nil {
		s.det.life.Stop()
	}
	h.pool.mu.Lock()
	delete(h.pool.detached, s)
	h.pool.mu.Unlock()
	// Counted before the stream is: WaitStreams, which sees the streams
	// end, then waits for the touches.
	h.touching.add()
	h.unregister(s)
	go func() {
		defer h.touching.done()
		s.touch(context.Background())
	}()
}

// Write gathers p in out.
func (w *detached) Write(p []byte) (int, error) {
	w.out = append(w.out, p...)
	return len(p), nil
}

// Flush writes out in one call. While the stream starts (on the HTTP
// handler's goroutine) it may wait for the socket; in the pool it writes
// what the socket takes now and keeps the rest, which serve retries.
func (w *detached) Flush() error {
	if len(w.out) == 0 {
		return nil
	}
	wait := writeSlice
	if w.blocking {
		wait = startTimeout
	}
	if err := w.conn.SetWriteDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	n, err := w.conn.Write(w.out)
	w.out = w.out[:copy(w.out, w.out[n:])]
	if len(w.out) == 0 && cap(w.out) > 16<<10 {
		w.out = nil // an idle stream keeps no large buffer
	}
	if err != nil && !w.blocking && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil // the rest waits in out; serve retries it
	}
	return err
}

// Abort closes the connection, which ends a detached stream: a write under
// way fails now. Any goroutine may call it (end does).
func (w *detached) Abort() { w.conn.Close() }
