package peer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Apply applies a forwarded request on the sequencer and returns its
// changes (one per op; one for an event) or its error.
type Apply func(ctx context.Context, req *Request) ([]api.Change, error)

// Server is the sequencer's side of links. It is safe for concurrent use.
type Server struct {
	// Peer reports whether a secret is the lease's.
	Peer  func(secret string) bool
	Apply Apply
	Log   *slog.Logger
	// Feed starts a feed (feed.go) to the instance whose listener's
	// backend is pid: send reports whether it took the texts (the feed
	// ends when it does not); nil: feeds are refused.
	Feed func(pid uint32, send func(notes []string) bool) (stop func())

	mu      sync.Mutex
	links   map[net.Conn]struct{}
	closed  bool
	busy    sync.WaitGroup // requests being applied (take)
	serving sync.WaitGroup // links being served (track)
}

// Link serves a request for a link or a feed (feed.go). One that is not
// an upgrade to Protocol (or FeedProtocol, naming a listener, when Feed
// is set) with the lease's secret is answered NOT_FOUND, as a path that
// does not exist; otherwise Link takes the connection over and serves
// its frames until it closes.
func (s *Server) Link(w http.ResponseWriter, r *http.Request) error {
	upgrade := r.Header.Get("Upgrade")
	pid, feed := feedOf(r)
	if r.Method != http.MethodGet || !s.Peer(r.Header.Get(SecretHeader)) ||
		!(strings.EqualFold(upgrade, Protocol) || feed && s.Feed != nil) {
		return api.Errorf(api.CodeNotFound, "no route %s %s", r.Method, r.URL.Path)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return api.Internal(err, "a link needs HTTP/1.1")
	}
	conn.SetDeadline(time.Time{}) // before track: Close may set one
	if !s.track(conn) {
		conn.Close()
		return nil
	}
	defer s.untrack(conn)
	if feed {
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+FeedProtocol+"\r\n\r\n")
		s.serveFeed(conn, brw.Reader, pid)
		return nil
	}
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+Protocol+"\r\n\r\n")
	s.serve(r.Context(), conn, brw.Reader)
	return nil
}

// serve reads requests from a link and applies each on a goroutine of
// its own, since a commit takes a while. Once the server closes, it
// answers each request Refused (not taken) until the link ends.
func (s *Server) serve(ctx context.Context, conn net.Conn, br *bufio.Reader) {
	ctx = context.WithoutCancel(ctx) // a write is applied whole once taken
	w := newWriter(conn, func(error) { conn.Close() })
	defer w.fail()
	var buf []byte
	for {
		msg, err := readFrame(br, buf)
		if errors.Is(err, os.ErrDeadlineExceeded) && s.closing() {
			s.hangUp(conn, br, w)
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.Log.Warn("a link from a peer failed", "err", err)
			}
			conn.Close()
			return
		}
		buf = msg
		req, err := decodeRequest(msg)
		if err != nil {
			s.Log.Error("a peer sent a frame that is not a request: link closed", "err", err)
			conn.Close()
			return
		}
		if !s.take() {
			w.queue(mustFrame(&Answer{ID: req.ID, Refused: true}), nil)
			continue
		}
		go func() {
			defer s.busy.Done()
			changes, err := s.Apply(ctx, req)
			var e *api.Error
			if err != nil && (!errors.As(err, &e) || e.Code == api.CodeInternal) {
				s.Log.Error("internal error", "request_id", req.RequestID, "forwarded", true, "err", err)
			}
			a := answerOf(req.ID, changes, err)
			if len(req.Ops) != 1 {
				// Only a single write is answered with its record's
				// value; a batch names its writes and an event gives its
				// position (handlers). A batch of large writes would not
				// fit a frame, and it is applied already.
				for i := range a.Changes {
					a.Changes[i].Data = nil
				}
			}
			frame, ferr := appendFrame(nil, a)
			if ferr != nil { // an answer too large for a frame: say so instead
				frame = mustFrame(answerOf(req.ID, nil, api.Internal(ferr, "the answer does not fit a frame")))
			}
			w.queue(frame, nil)
		}()
	}
}

// hangUp ends a link as the server closes: once the answers queued
// have been written, it closes its side for writing and reads what the
// other end still sends until it closes too, or closeGrace passes, so
// that closing does not reset the connection under answers on their way.
func (s *Server) hangUp(conn net.Conn, br *bufio.Reader, w *writer) {
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	select {
	case <-w.drained():
	case <-grace.C:
	}
	if cw, ok := closeWriter(conn); ok {
		cw.CloseWrite()
		conn.SetReadDeadline(time.Now().Add(closeGrace))
		io.Copy(io.Discard, br)
	}
	conn.Close()
}

// closeWriter finds the connection that can close its side for writing
// (a TCP or TLS one) under the wrappers that say what they wrap
// (NetConn, as handlers.Listener's and tls.Conn do).
func closeWriter(c net.Conn) (interface{ CloseWrite() error }, bool) {
	for {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			return cw, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = u.NetConn()
	}
}

// take counts a request as being applied, unless the server is closing.
func (s *Server) take() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.busy.Add(1)
	return true
}

// closeGrace is how long a closing server keeps reading its links once
// the requests being applied have answered (requests still arriving are
// answered Refused), and then how long each of its steps in hangUp may
// take.
const closeGrace = 250 * time.Millisecond

// Close stops taking requests, waits (until ctx ends) for those being
// applied, so that their answers go out, and ends every link (hangUp)
// closeGrace later. Links still open when ctx ends are closed.
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	wait(ctx, &s.busy)
	s.mu.Lock()
	for c := range s.links {
		c.SetReadDeadline(time.Now().Add(closeGrace))
	}
	s.mu.Unlock()
	if !wait(ctx, &s.serving) {
		s.mu.Lock()
		for c := range s.links {
			c.Close()
		}
		s.mu.Unlock()
	}
}

// wait waits for wg until ctx ends, and reports whether wg did.
func wait(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// closing reports whether Close has begun.
func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.links == nil {
		s.links = map[net.Conn]struct{}{}
	}
	s.links[c] = struct{}{}
	s.serving.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.links, c)
	s.mu.Unlock()
	s.serving.Done()
}
