package peer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
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

	mu     sync.Mutex
	links  map[net.Conn]struct{}
	closed bool
	busy   sync.WaitGroup // requests being applied
}

// Link serves a request for a link. One that is not an upgrade to
// Protocol with the lease's secret is answered NOT_FOUND, as a path that
// does not exist; otherwise Link takes the connection over and serves
// its frames until it closes.
func (s *Server) Link(w http.ResponseWriter, r *http.Request) error {
	if !strings.EqualFold(r.Header.Get("Upgrade"), Protocol) || !s.Peer(r.Header.Get(SecretHeader)) {
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
// its own, since a commit takes a while; answers share the link's
// writes as requests do on the other side.
func (s *Server) serve(ctx context.Context, conn net.Conn, br *bufio.Reader) {
	ctx = context.WithoutCancel(ctx) // a write is applied whole once taken
	w := &writer{conn: conn}
	var buf []byte
	for {
		msg, err := readFrame(br, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.Log.Warn("a link from a peer failed", "err", err)
			}
			conn.Close()
			return
		}
		req, err := decodeRequest(msg)
		if err != nil {
			s.Log.Error("a peer sent a frame that is not a request: link closed", "err", err)
			conn.Close()
			return
		}
		buf = msg
		s.busy.Add(1)
		go func() {
			defer s.busy.Done()
			changes, err := s.Apply(ctx, req)
			var e *api.Error
			if err != nil && (!errors.As(err, &e) || e.Code == api.CodeInternal) {
				s.Log.Error("internal error", "request_id", req.RequestID, "forwarded", true, "err", err)
			}
			w.send(answerOf(req.ID, changes, err))
		}()
	}
}

// Close stops taking links, waits (until ctx ends) for the requests
// being applied, so that their answers go out, and closes every link.
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
	defer s.mu.Unlock()
	for c := range s.links {
		c.Close()
	}
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
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.links, c)
	s.mu.Unlock()
}

// writer writes a link's answers: the first to find no write under way
// writes what is queued, until nothing is.
type writer struct {
	conn net.Conn

	mu      sync.Mutex
	out     []byte
	spare   []byte
	writing bool
	failed  bool
}

func (w *writer) send(a *Answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed {
		return
	}
	var err error
	if w.out, err = appendFrame(w.out, a); err != nil {
		// Only an answer too large could fail: say so instead.
		w.out, _ = appendFrame(w.out, answerOf(a.ID, nil, api.Internal(err, "the answer is too large")))
	}
	if w.writing {
		return
	}
	w.writing = true
	for len(w.out) > 0 && !w.failed {
		buf := w.out
		w.out, w.spare = w.spare[:0], nil
		w.mu.Unlock()
		w.conn.SetWriteDeadline(time.Now().Add(AnswerTimeout))
		_, err := w.conn.Write(buf)
		w.mu.Lock()
		w.spare = buf
		if err != nil {
			w.failed = true
			w.conn.Close()
		}
	}
	w.writing = false
}
