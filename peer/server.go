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

	mu      sync.Mutex
	links   map[net.Conn]struct{}
	closed  bool
	busy    sync.WaitGroup // requests being applied (take)
	serving sync.WaitGroup // links being served (track)
}

// Link serves a request for a link. One that is not an upgrade to
// Protocol with the lease's secret is answered NOT_FOUND, as a path that
// does not exist; otherwise Link takes the connection over and serves
// its frames until it closes.
func (s *Server) Link(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet || !strings.EqualFold(r.Header.Get("Upgrade"), Protocol) || !s.Peer(r.Header.Get(SecretHeader)) {
		return api.Errorf(api.CodeNotFound, "no route %s %s", r.Method, r.URL.Path)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return api.Internal(err, "a link needs HTTP/1.1")
	}
	if !s.track(conn) {
		conn.Close()
		return nil
	}
	defer s.untrack(conn)
	conn.SetDeadline(time.Time{})
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
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
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
			frame, ferr := appendFrame(nil, answerOf(req.ID, changes, err))
			if ferr != nil { // an answer too large for a frame: say so instead
				frame = mustFrame(answerOf(req.ID, nil, api.Internal(ferr, "the answer does not fit a frame")))
			}
			w.queue(frame, nil)
		}()
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

// closeGrace is how long a closing server keeps its links open once the
// requests being applied have answered: requests still arriving are
// answered Refused, and what it wrote reaches the other end before the
// connection closes (closing with unread input would reset it).
const closeGrace = 250 * time.Millisecond

// Close stops taking requests, waits (until ctx ends) for those being
// applied, so that their answers go out, and closes every link
// closeGrace later.
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.busy.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.links {
		c.SetReadDeadline(time.Now().Add(closeGrace))
	}
	s.mu.Unlock()
	s.serving.Wait()
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
