package realtime

import (
	"context"
	"syscall"
	"time"
)

// hangupInterval is how often the pool looks for detached streams whose
// client has closed its connection. A detached stream has no goroutine
// reading its socket: without this look it would learn that its client
// went only when it next writes, at the next heartbeat or change, and
// presence would keep a user who closed their last tab online until then.
var hangupInterval = time.Second // a variable for tests

// watchHangups ends, every hangupInterval, the detached streams whose
// client has closed the connection (FIN or RST), as a failed write would:
// one non-blocking read per stream from one goroutine, instead of a
// goroutine per stream parked in a read, spread over half the interval.
// Connections that are not sockets (a TLS conn, a pipe) are left to their
// writes. It ends as well the streams whose lifetime is over: one look for
// every stream, where a timer per stream would cost each its memory (only
// a short lifetime, or one that its token's expiry may end first, has a
// timer: Detach).
func (h *Hub) watchHangups(ctx context.Context) {
	every := h.lookEvery()
	t := time.NewTicker(every)
	defer t.Stop()
	var list []*Stream
	l := newLook()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		list = h.pool.list(list[:0])
		now := monoNow()
		spread(ctx, list, every/2, func(s *Stream) {
			switch {
			case s.ended():
			case s.deadline != 0 && now >= s.deadline:
				s.end(nil) // its lifetime is over
			case l.hungUp(s.det.conn):
				s.end(nil) // the client went: a normal end, as Run's is
			}
		})
		clear(list) // keep no ended stream alive until the next look
	}
}

const (
	// reapWait bounds how long reap waits for the slots of ended streams
	// to come back (their writer lets go of them).
	reapWait = 100 * time.Millisecond
	// reapAllEvery is how often at most reap looks at every stream (for
	// MAX_STREAMS): a look at a socket is a system call, and a full
	// instance may refuse many streams a second.
	reapAllEvery = 100 * time.Millisecond
)

// reap looks at once, rather than at the next look of watchHangups, for
// the detached streams that hold the slots that which says are taken (the
// user's, or every stream's) and whose client has gone; it ends them,
// waits until their slots and those of the streams that ended before it
// looked come back (at most reapWait), and reports whether any did. Open
// calls it before it refuses a stream for a limit, so that a client that
// closed a stream and opens another at once is not refused for the one it
// closed. One reap runs at a time (a refusal that finds one under way
// does not wait for it), and one of every stream at most every
// reapAllEvery.
func (h *Hub) reap(which full, user string) bool {
	if !h.reaping.TryLock() {
		return false
	}
	defer h.reaping.Unlock()
	if which == fullInAll {
		now := monoNow()
		if now < h.reapAll {
			return false
		}
		h.reapAll = now + int64(reapAllEvery)
	}
	l := newLook()
	var going []*Stream
	for _, s := range h.pool.filter(func(s *Stream) bool { return which == fullInAll || s.User.ID == user }) {
		if !s.ended() && l.hungUp(s.det.conn) {
			s.end(nil) // the client went: a normal end, as a look's is
		}
		if s.ended() && s.slot.Load() {
			going = append(going, s)
		}
	}
	deadline := time.Now().Add(reapWait)
	for _, s := range going {
		for s.slot.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return len(going) > 0
}

// lookEvery is how often watchHangups looks: every hangupInterval, or more
// often for a lifetime shorter than a few looks (in tests). A look goes
// over the streams in half of it.
func (h *Hub) lookEvery() time.Duration { return h.lookEach }

// look is the scratch of watchHangups, made once so that a look at a
// connection allocates (almost) nothing. Not safe for concurrent use.
type look struct {
	buf  []byte
	gone bool
	read func(fd uintptr) // sets gone
}

func newLook() *look {
	l := &look{buf: make([]byte, 512)}
	l.read = func(fd uintptr) { l.gone = peerClosed(fd, l.buf) }
	return l
}

// hungUp reports whether the peer of conn has closed it or reset it. It
// reads without waiting and throws away what it reads: a client sends
// nothing meaningful on a stream's connection (its response says
// Connection: close, and nobody reads the socket after the server took
// it over), and bytes left unread would hide a close behind them.
func (l *look) hungUp(conn Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// Control holds the descriptor open meanwhile: a concurrent Close
	// cannot hand its number to another connection under the read.
	l.gone = false
	err = rc.Control(l.read)
	return err == nil && l.gone
}
