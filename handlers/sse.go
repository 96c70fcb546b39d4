package handlers

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// streamHead is the response head of a detached HTTP/1 stream: the body
// runs until the connection closes, so it needs no chunked encoding.
const streamHead = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/event-stream\r\n" +
	"Cache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\n" +
	"Connection: close\r\n\r\n"

// headWith is a detached stream's head with the headers that middleware
// set on the response before it was hijacked (CORS's, for one).
// Header.Write turns any line break in a value into a space.
func headWith(head string, h http.Header) string {
	if len(h) == 0 {
		return head
	}
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(head, "\r\n"))
	h.Write(&b)
	b.WriteString("\r\n")
	return b.String()
}

// writeTimeout bounds one flush of a stream: a client that accepts no
// bytes for this long is gone.
const writeTimeout = 10 * time.Second

// sink is the SSE writer. Frames are gathered in one buffer and handed to
// net/http in a single Write per flush: one chunk and one syscall however
// many frames were queued. It implements realtime.Sink.
type sink struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	buf      []byte
	deadline time.Time // the write deadline in force
}

func (s *sink) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	return len(p), nil
}

func (s *sink) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	// Moving the deadline costs a timer update: do it only when less than
	// half of writeTimeout is left.
	if now := time.Now(); s.deadline.Sub(now) < writeTimeout/2 {
		s.deadline = now.Add(writeTimeout)
		if err := s.rc.SetWriteDeadline(s.deadline); err != nil {
			return err
		}
	}
	_, err := s.w.Write(s.buf)
	if cap(s.buf) > 16<<10 {
		s.buf = nil // an idle stream keeps no large buffer
	} else {
		s.buf = s.buf[:0]
	}
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

// Abort makes a write blocked on a full socket fail now.
func (s *sink) Abort() { s.rc.SetWriteDeadline(time.Now()) }

// streamSubs reads the subscriptions of GET /stream's query, in the
// query's order (checkQuery has parsed it already). Their names are
// copies: a name read from the query is a piece of the request's first
// line, which a stream would otherwise keep whole for as long as it is
// open (an access token in the query with it). One that names nothing
// (record=) is refused as the name or user id it lacks.
func streamSubs(rawQuery string) ([]api.Subscription, error) {
	var subs []api.Subscription
	for rest := rawQuery; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			continue // not one of ours: checkQuery let only valid escapes through
		}
		var x api.Subscription
		var field *string
		switch key {
		case "record":
			field = &x.Record
		case "event":
			field = &x.Event
		case "presence":
			field = &x.Presence
		case "listen":
			field = &x.Listen
		default:
			continue
		}
		name, err := url.QueryUnescape(v)
		switch {
		case err != nil:
			return nil, api.InvalidParameter(key, "%v", err)
		case name == "" && key == "presence":
			return nil, api.ValidateUserID("").(*api.Error).With("parameter", key)
		case name == "":
			_, _, err := api.ValidatePattern("")
			return nil, err
		}
		*field = strings.Clone(name)
		subs = append(subs, x)
	}
	return subs, nil
}

// openStream serves GET /stream, and GET /records/{name} as a stream.
func openStream(hub *realtime.Hub, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var subs []api.Subscription
		if r.URL.Path == "/stream" {
			var err error
			if subs, err = streamSubs(r.URL.RawQuery); err != nil {
				writeError(w, r, err)
				return
			}
		} else { // GET /records/{name} as a stream
			name, err := nameParam(r)
			if err == nil {
				_, err = pathQuery(r) // an empty ?path= too
			}
			if err != nil {
				writeError(w, r, err)
				return
			}
			subs = []api.Subscription{{Record: strings.Clone(name), Path: strings.Clone(q.Get("path"))}}
		}
		for _, x := range subs {
			if err := realtime.ValidateSubscription(x); err != nil {
				writeError(w, r, err)
				return
			}
		}
		token := r.Header.Get("Last-Event-ID")
		if token == "" {
			token = q.Get("lastEventId")
		}
		s, err := hub.Open(r.Context(), userFrom(r), subs, token)
		if err != nil {
			refusalHeaders(w, err)
			writeError(w, r, err)
			return
		}
		rc := http.NewResponseController(w)
		if r.ProtoMajor == 1 {
			// HTTP/1: take the connection over and hand the stream to the
			// writer pool; this goroutine and net/http's buffers go away,
			// and the connection's addresses with it (leanConn).
			if c, _, err := rc.Hijack(); err == nil {
				conn := leanConn(rawConn(c))
				if _, err = io.WriteString(conn, headWith(streamHead, w.Header())); err != nil {
					s.Abandon()
				} else {
					err = s.Detach(r.Context(), conn)
				}
				if err != nil {
					conn.Close()
					log.Info("stream ended", "stream", s.ID, "err", err)
				}
				return
			}
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		err = s.Run(r.Context(), &sink{w: w, rc: rc})
		if err != nil && r.Context().Err() == nil {
			log.Info("stream ended", "stream", s.ID, "err", err)
		}
	}
}

// rawConn returns the connection under Listener's wrapper, which only
// rewrites net/http's own error answers: a detached stream writes SSE
// frames, and the writer pool needs the socket itself to notice that its
// client has closed it (a syscall.Conn).
func rawConn(c net.Conn) net.Conn {
	if w, ok := c.(conn); ok {
		return w.Conn
	}
	return c
}

// changeSubscription serves POST and DELETE /stream/{stream}/subscriptions.
func changeSubscription(hub *realtime.Hub) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		var x api.Subscription
		if _, err := readJSON(r, &x); err != nil {
			return err
		}
		id := chi.URLParam(r, "stream")
		if err := hub.ChangeSubscription(r.Context(), userFrom(r), id, x, r.Method == http.MethodPost); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
