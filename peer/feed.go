package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// A feed carries the texts of the sequencer's notifications of its
// commits to another instance (db/postgres's relay.go), so that the
// sequencer's commits need no NOTIFY, which would wake every listening
// backend of the database and every instance. It is a connection of its
// own, upgraded as a link is (GET Path, the lease's secret) but to
// FeedProtocol, with the instance's listener's backend in
// ListenerHeader. Its frames go one way, from the sequencer: each is a
// 4-byte big-endian length and a notification's text. An instance whose
// feed ends reads the log's head (the last texts sent may not have
// arrived) and opens another.

// FeedProtocol is the Upgrade token of a feed.
const FeedProtocol = "switchboard-feed/1"

// ListenerHeader names, on the request for a feed, the backend (pid) of
// the instance's listener.
const ListenerHeader = "X-Switchboard-Listener"

// maxBacklog bounds what a feed's writer holds for an instance that
// reads too slowly: past it the feed ends, and that instance reads the log.
const maxBacklog = 16 << 20

// feedOf returns the listener's backend that a request for a feed names;
// feed is false when it is not one.
func feedOf(r *http.Request) (pid uint32, feed bool) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), FeedProtocol) {
		return 0, false
	}
	n, err := strconv.ParseUint(r.Header.Get(ListenerHeader), 10, 32)
	return uint32(n), err == nil && n > 0
}

// serveFeed sends the sequencer's notifications to a feed until the
// other end closes it, the server closes (Close's read deadline) or the
// feed falls maxBacklog behind.
func (s *Server) serveFeed(conn net.Conn, br *bufio.Reader, pid uint32) {
	w := newWriter(conn, func(error) { conn.Close() })
	defer w.fail()
	stop := s.Feed(pid, func(notes []string) {
		if !w.queueTexts(notes, maxBacklog) {
			conn.Close()
		}
	})
	defer stop()
	io.Copy(io.Discard, br) // nothing comes the other way: this ends with the connection
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
// Follow's goroutine, until the feed fails or ctx ends. It returns why
// it ended.
func Follow(ctx context.Context, url, secret string, pid uint32, tlsConfig *tls.Config, take func(text string)) error {
	conn, br, err := dial(url, secret, tlsConfig, FeedProtocol, strconv.FormatUint(uint64(pid), 10))
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var buf []byte
	for {
		msg, err := readFrame(br, buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		buf = msg
		take(string(msg))
	}
}
