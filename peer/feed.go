package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A feed carries the texts of the sequencer's notifications of its
// commits to another instance (db/postgres's relay.go), so that the
// sequencer's commits need no NOTIFY, which would wake every listening
// backend of the database and every instance. It is a connection of its
// own, upgraded as a link is (GET Path, the lease's secret) but to
// FeedProtocol, with the instance's listener's backend in
// ListenerHeader. Its frames are a 4-byte big-endian length and a text:
// from the sequencer, a notification's text; from either end, an empty
// one, a heartbeat, every heartbeat; from the sequencer, endText as its
// last frame when it ends the feed in order; and from the instance, a
// pace (paceText): how long the sequencer may gather texts before it
// writes them, so that an instance that needs none of them soon (no
// stream, no read waiting) wakes once for many. A sequencer ignores any
// other text from the instance (an older one ignores paces too).
//
// A feed ends in order when either end ends it: the instance closes its
// side for writing (or the sequencer's server closes); the sequencer
// stops sending (so that its commits are notified again), writes out
// what it took and endText, and closes; the instance reads up to that
// end, and has lost nothing. A feed that ends otherwise (an error, no
// frame for heartbeatTimeout, no endText) may have lost texts: the
// instance must count its listener as begun again (db/postgres's
// CatchUp) before it opens another.

// FeedProtocol is the Upgrade token of a feed.
const FeedProtocol = "switchboard-feed/1"

// ListenerHeader names, on the request for a feed, the backend (pid) of
// the instance's listener.
const ListenerHeader = "X-Switchboard-Listener"

// maxBacklog bounds what a feed's writer holds for an instance that
// reads too slowly: past it the feed ends, and that instance reads the log.
const maxBacklog = 16 << 20

// heartbeat is how often each end of a feed sends an empty frame, and
// heartbeatTimeout how long an end waits for a frame before it takes the
// feed as broken (the other end is gone without a word): from
// heartbeatTimeout-heartbeat to heartbeatTimeout.
var (
	heartbeat        = 500 * time.Millisecond
	heartbeatTimeout = 2 * time.Second
)

// endText is the sequencer's last frame of a feed it ends in order, and
// feedGrace how long it waits for the frames before it to be written.
const (
	endText   = "."
	feedGrace = time.Second
)

// beat is a heartbeat's frame.
var beat = []byte{0, 0, 0, 0}

// maxPace bounds the pace a sequencer takes from an instance: well
// below heartbeatTimeout-heartbeat, since heartbeats wait as texts do.
var maxPace = 100 * time.Millisecond

// paceText is the text of a pace frame: "p" and the pace in
// microseconds.
func paceText(d time.Duration) string {
	return "p" + strconv.FormatInt(d.Microseconds(), 10)
}

// paceOf returns the pace a frame's text asks for, at most maxPace; ok is
// false when the text is not a pace.
func paceOf(text []byte) (d time.Duration, ok bool) {
	if len(text) < 2 || text[0] != 'p' {
		return 0, false
	}
	us, err := strconv.ParseUint(string(text[1:]), 10, 63)
	if err != nil {
		return 0, false
	}
	return time.Duration(min(us, uint64(maxPace.Microseconds()))) * time.Microsecond, true
}

// A Pace is how long an instance wants its feed's sequencer to gather
// texts before it writes them: 0 (at first) for at once. The feeds
// Follow opens with it send the sequencer each change. Its methods are
// safe for concurrent use.
type Pace struct {
	mu      sync.Mutex
	d       time.Duration
	changed chan struct{} // closed by the next Set that changes d; nil if nobody waits
}

// Set sets the pace.
func (p *Pace) Set(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d == p.d {
		return
	}
	p.d = d
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// Get returns the pace.
func (p *Pace) Get() time.Duration {
	d, _ := p.get()
	return d
}

// get returns the pace, and a channel closed when it changes; a nil
// Pace is 0, and never changes.
func (p *Pace) get() (time.Duration, <-chan struct{}) {
	if p == nil {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.d, p.changed
}

// feedOf returns the listener's backend that a request for a feed names;
// feed is false when it is not one.
func feedOf(r *http.Request) (pid uint32, feed bool) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), FeedProtocol) {
		return 0, false
	}
	n, err := strconv.ParseUint(r.Header.Get(ListenerHeader), 10, 32)
	return uint32(n), err == nil && n > 0
}

// serveFeed sends the sequencer's notifications to a feed, with a
// heartbeat, at the pace the other end asks for, until the other end
// closes it or stops beating, the server closes (Close's read deadline),
// or the feed falls maxBacklog behind; then it ends the feed in order
// (see above) if it can.
func (s *Server) serveFeed(conn net.Conn, br *bufio.Reader, pid uint32) {
	w := newWriter(conn, func(error) { conn.Close() })
	defer w.fail()
	stop := s.Feed(pid, func(notes []string) bool {
		if !w.queueTexts(notes, maxBacklog) {
			conn.Close()
			return false
		}
		return true
	})
	defer stop()
	period, timeout := heartbeat, heartbeatTimeout
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		var buf []byte
		var deadline time.Time
		for {
			if now := time.Now(); deadline.Sub(now) < timeout-period && !s.closing() {
				deadline = now.Add(timeout)
				conn.SetReadDeadline(deadline)
			}
			msg, err := readFrame(br, buf)
			if err != nil {
				return
			}
			if d, ok := paceOf(msg); ok {
				w.setPace(d)
			}
			buf = msg
		}
	}()
	beats := time.NewTicker(period)
	defer beats.Stop()
	for waiting := true; waiting; {
		select {
		case <-beats.C:
			w.queueTexts([]string{""}, maxBacklog)
		case <-ended:
			waiting = false
		}
	}
	stop()
	w.setPace(0)
	w.queueTexts([]string{endText}, maxBacklog+len(endText)+4)
	grace := time.NewTimer(feedGrace)
	defer grace.Stop()
	select {
	case <-w.drained():
	case <-grace.C:
	}
	conn.Close()
}

// queueTexts queues a frame for each text, unless more than limit bytes
// would then wait: it reports whether they were queued.
func (w *writer) queueTexts(texts []string, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed {
		return false
	}
	n := len(w.out)
	for _, t := range texts {
		n += 4 + len(t)
	}
	if n > limit {
		return false
	}
	for _, t := range texts {
		w.out = appendText(w.out, t)
	}
	w.signalPaced()
	return true
}

// appendText appends the frame of a feed's text to buf.
func appendText(buf []byte, text string) []byte {
	return append(binary.BigEndian.AppendUint32(buf, uint32(len(text))), text...)
}

// Follow opens a feed from the sequencer at url, with its secret, for
// the listener whose backend is pid, at pace (nil: 0, always), and
// hands each text to take, on
// Follow's goroutine, with more set when another has come already (a
// call with an empty text takes nothing but says that), until the feed
// ends or ctx ends; then it ends the feed in order (see above). It
// returns whether the feed was opened, and nil if it ended in order:
// otherwise it may have lost texts.
func Follow(ctx context.Context, url, secret string, pid uint32, tlsConfig *tls.Config, pace *Pace, take func(text string, more bool)) (opened bool, err error) {
	conn, br, err := dial(url, secret, tlsConfig, FeedProtocol, strconv.FormatUint(uint64(pid), 10))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	period, timeout := heartbeat, heartbeatTimeout
	var mu sync.Mutex // serialises the heartbeats' writes and the close
	closing := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		closing = true
		conn.SetReadDeadline(time.Now().Add(timeout))
		if cw, ok := closeWriter(conn); !ok || cw.CloseWrite() != nil {
			conn.Close()
		}
	})
	defer stop()
	quit := make(chan struct{})
	defer close(quit)
	send := func(frame []byte) {
		mu.Lock()
		defer mu.Unlock()
		if !closing {
			conn.SetWriteDeadline(time.Now().Add(timeout))
			conn.Write(frame) // a failure shows on the reads
		}
	}
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		var sent time.Duration
		for {
			d, changed := pace.get()
			if d != sent {
				send(appendText(nil, paceText(d)))
				sent = d
			}
			select {
			case <-quit:
				return
			case <-t.C:
				send(beat)
			case <-changed:
			}
		}
	}()
	var buf []byte
	var deadline time.Time
	more, ended := false, false
	defer func() {
		if more { // a wake-up waits for a text that will not come
			take("", false)
		}
	}()
	for {
		mu.Lock()
		if now := time.Now(); !closing && deadline.Sub(now) < timeout-period {
			deadline = now.Add(timeout)
			conn.SetReadDeadline(deadline)
		}
		mu.Unlock()
		msg, err := readFrame(br, buf)
		switch {
		case err != nil && ended && errors.Is(err, io.EOF):
			return true, nil
		case err != nil:
			return true, err
		}
		buf = msg
		if string(msg) == endText {
			ended = true
			continue
		}
		if len(msg) > 0 || more {
			more = complete(br)
			take(string(msg), more)
		}
	}
}

// complete reports whether br holds a whole frame already.
func complete(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	head, _ := br.Peek(4) // buffered: no read
	return br.Buffered() >= 4+int(binary.BigEndian.Uint32(head))
}
