package peer

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// writer owns the writes of one end of a link: goroutines queue frames,
// and its own goroutine writes what is queued, as many frames per system
// call as are waiting. Nobody waits on the connection but it.
type writer struct {
	conn   net.Conn
	wake   chan struct{} // a token: frames are queued, or the writer failed
	onFail func(error)   // called once, from the goroutine, when a write fails

	mu     sync.Mutex
	out    []byte   // frames queued, not yet taken
	sent   []marker // the frames' markers, where a sender keeps one
	spare  []byte   // the buffer of the last write, for reuse
	failed bool
	busy   bool          // a write is under way
	idle   chan struct{} // closed once nothing is queued or being written (drained)
	pace   time.Duration // how long frames queued by signalPaced may wait
	timer  *time.Timer   // signals once they have waited pace; armed while they wait
	armed  bool
}

// marker tells a sender whether its frame may have reached the other
// end: set once the writer takes the frame, cleared if the write ended
// before the frame's end.
type marker struct {
	flag *atomic.Bool
	end  int // where the frame ends in the buffer written
}

func newWriter(conn net.Conn, onFail func(error)) *writer {
	w := &writer{conn: conn, wake: make(chan struct{}, 1), onFail: onFail}
	go w.run()
	return w
}

// queue queues a frame; sent, if not nil, is set while the frame may
// have reached the other end. Once the writer has failed, it queues
// nothing.
func (w *writer) queue(frame []byte, sent *atomic.Bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed {
		return
	}
	w.out = append(w.out, frame...)
	if sent != nil {
		w.sent = append(w.sent, marker{sent, len(w.out)})
	}
	w.signal()
}

// fail stops the writer: frames it has not taken are never written.
// Once fail returns, every marker of a frame that may be written is set.
func (w *writer) fail() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed = true
	w.out, w.sent = nil, nil
	w.signal()
	w.idleLocked()
}

// drained returns a channel closed once everything queued has been
// written (or the writer failed).
func (w *writer) drained() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.idle == nil {
		w.idle = make(chan struct{})
	}
	ch := w.idle
	if (len(w.out) == 0 && !w.busy) || w.failed {
		w.idleLocked()
	}
	return ch
}

func (w *writer) idleLocked() {
	if w.idle != nil {
		close(w.idle)
		w.idle = nil
	}
}

func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// signalPaced signals once the frames queued have waited the writer's
// pace; w.mu is held.
func (w *writer) signalPaced() {
	switch {
	case w.pace == 0:
		w.signal()
	case w.armed:
	case w.timer == nil:
		w.timer, w.armed = time.AfterFunc(w.pace, w.signal), true
	default:
		w.timer.Reset(w.pace)
		w.armed = true
	}
}

// setPace sets how long the frames that signalPaced queues may wait
// before they are written; 0 writes what waits at once, and a shorter
// pace makes what waits wait no longer than it from now.
func (w *writer) setPace(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.armed:
	case d == 0:
		w.signal()
	case d < w.pace:
		w.timer.Reset(d)
	}
	w.pace = d
}

// writeTimeout fails a link whose other end stops reading.
const writeTimeout = AnswerTimeout

func (w *writer) run() {
	var deadline time.Time
	for range w.wake {
		w.mu.Lock()
		if w.failed {
			w.mu.Unlock()
			return
		}
		buf, sent := w.out, w.sent
		w.out, w.sent, w.spare = w.spare[:0], nil, nil
		w.armed = false // a timer still to fire finds nothing, or frames queued since
		for _, m := range sent {
			m.flag.Store(true)
		}
		w.busy = len(buf) > 0
		w.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		// Moved on once half of it has passed, not at every write.
		if now := time.Now(); deadline.Sub(now) < writeTimeout/2 {
			deadline = now.Add(writeTimeout)
			w.conn.SetWriteDeadline(deadline)
		}
		n, err := w.conn.Write(buf)
		for _, m := range sent {
			if m.end > n {
				m.flag.Store(false)
			}
		}
		if err != nil {
			w.fail()
			w.onFail(err)
			return
		}
		w.mu.Lock()
		if cap(buf) <= maxSpare {
			w.spare = buf
		}
		w.busy = false
		if len(w.out) == 0 {
			w.idleLocked()
		}
		w.mu.Unlock()
	}
}

// maxSpare bounds the buffer a writer keeps between writes: a large
// batch's is let go.
const maxSpare = 1 << 20
