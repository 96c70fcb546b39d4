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
// ListenerHeader. Its frames go one way, from the sequencer: each is a
// 4-byte big-endian length and a notification's text, or an empty one,
// a heartbeat, sent every heartbeat.
//
// A feed ends in order: the instance closes its side for writing; the
// sequencer stops sending (so that its commits are notified again),
// writes out what it had taken, and closes; the instance reads up to
// that end. A feed that breaks (an error, or no frame for
// heartbeatTimeout) may have lost texts: the instance reads the log's
// head (the caller of Follow does) and opens another.

// FeedProtocol is the Upgrade token of a feed.
const FeedProtocol = "switchboard-feed/1"

// ListenerHeader names, on the request for a feed, the backend (pid) of
// the instance's listener.
const ListenerHeader = "X-Switchboard-Listener"

// maxBacklog bounds what a feed's writer holds for an instance that
// reads too slowly: past it the feed ends, and that instance reads the log.
const maxBacklog = 16 << 20

// heartbeat is how often a feed carries an empty frame, and
// heartbeatTimeout how long an instance waits for a frame before it takes
// its feed as broken (a connection whose other end is gone without a
// word).
var (
	heartbeat        = 500 * time.Millisecond
	heartbeatTimeout = 2 * time.Second
)

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
// heartbeat, until the other end closes it (then in order: see above),
// the server closes (Close's read deadline) or the feed falls maxBacklog
// behind.
func (s *Server) serveFeed(conn net.Conn, br *bufio.Reader, pid uint32) {
	w := newWriter(conn, func(error) { conn.Close() })
	defer w.fail()
	stop := s.Feed(pid, func(notes []string) {
		if !w.queueTexts(notes, maxBacklog) {
			conn.Close()
		}
	})
	beats := time.NewTicker(heartbeat)
	defer beats.Stop()
	ended := make(chan struct{})
	go func() {
		io.Copy(io.Discard, br) // nothing comes the other way: this ends with the connection
		close(ended)
	}()
	for done := false; !done; {
		select {
		case <-beats.C:
			w.queueTexts([]string{""}, maxBacklog)
		case <-ended:
			done = true
		}
	}
	stop()
	drained := time.NewTimer(closeGrace)
	defer drained.Stop()
	select {
	case <-w.drained():
	case <-drained.C:
	}
	conn.Close()
}

// queueTexts queues a frame for each text, unless more than limit bytes
// would then wait: it reports whether they were queued.
func (w *writer) queueTexts(texts []string, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed {
		return true // the feed is ending
	}
	n := len(w.out)
	for _, t := range texts {
		n += 4 + len(t)
	}
	if n > limit {
		return false
	}
	for _, t := range texts {
		w.out = binary.BigEndian.AppendUint32(w.out, uint32(len(t)))
		w.out = append(w.out, t...)
	}
	w.signal()
	return true
}

// Follow opens a feed from the sequencer at url, with its secret, for
// the listener whose backend is pid, and hands each text to take, on
// Follow's goroutine, with more set when another has come already, until
// the feed breaks or ctx ends; then it ends the feed in order (see
// above). It returns whether the feed was opened, and why it ended:
// ctx's error when it ended in order, else the feed may have lost texts.
func Follow(ctx context.Context, url, secret string, pid uint32, tlsConfig *tls.Config, take func(text string, more bool)) (opened bool, err error) {
	conn, br, err := dial(url, secret, tlsConfig, FeedProtocol, strconv.FormatUint(uint64(pid), 10))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	timeout := heartbeatTimeout
	var mu sync.Mutex
	closing := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		closing = true
		cw, ok := closeWriter(conn)
		if !ok || cw.CloseWrite() != nil {
			conn.Close()
			return
		}
		conn.SetReadDeadline(time.Now().Add(timeout))
	})
	defer stop()
	var buf []byte
	var deadline time.Time
	for {
		// Moved on once half of it has passed, not at every frame.
		mu.Lock()
		if now := time.Now(); !closing && deadline.Sub(now) < timeout/2 {
			deadline = now.Add(timeout)
			conn.SetReadDeadline(deadline)
		}
		mu.Unlock()
		msg, err := readFrame(br, buf)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, io.EOF) {
				return true, ctx.Err() // the sequencer's end of an orderly close
			}
			return true, err
		}
		buf = msg
		if len(msg) > 0 {
			take(string(msg), complete(br))
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
