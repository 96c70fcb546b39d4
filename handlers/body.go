package handlers

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// drainGrace is how long a body still arriving when the server drains may
// take to finish.
const drainGrace = time.Second

// Bodies bounds request bodies in size and in time: a client that sends a
// body slowly, or never finishes it, holds a connection and a goroutine
// only until its deadline, and a draining server cuts such reads short
// instead of waiting for them. It is safe for concurrent use.
type Bodies struct {
	max     int64
	timeout time.Duration

	mu       sync.Mutex
	reading  map[*body]struct{} // bodies not yet read to their end
	draining bool
}

// NewBodies returns the limits of request bodies: at most max bytes, read
// within timeout of the handler's start.
func NewBodies(max int64, timeout time.Duration) *Bodies {
	return &Bodies{max: max, timeout: timeout, reading: make(map[*body]struct{})}
}

// Drain gives every body still arriving, and every later one, drainGrace
// to finish.
func (b *Bodies) Drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	for r := range b.reading {
		r.rc.SetReadDeadline(time.Now().Add(drainGrace))
	}
}

// limit is the middleware: a declared Content-Length over max is refused
// at once, a longer body fails while read, and a body that has not
// arrived by its deadline fails too.
func (b *Bodies) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > b.max {
			writeError(w, r, realtime.LimitBodyBytes.Refuse(api.Errorf(api.CodePayloadTooLarge, "the body is larger than %d bytes", b.max)))
			return
		}
		if r.ContentLength == 0 { // no body: GET streams and long polls keep no deadline
			next.ServeHTTP(w, r)
			return
		}
		rd := &body{ReadCloser: http.MaxBytesReader(w, r.Body, b.max), rc: *http.NewResponseController(w), bodies: b}
		deadline := time.Now().Add(b.timeout)
		b.mu.Lock()
		if b.draining {
			deadline = time.Now().Add(drainGrace)
		}
		b.reading[rd] = struct{}{}
		b.mu.Unlock()
		rd.rc.SetReadDeadline(deadline)
		defer rd.done()
		r.Body = rd
		next.ServeHTTP(w, r)
	})
}

// body is a request body under a read deadline, which it lifts once read
// to its end: net/http then reads in the background to notice a client
// that goes away, and a deadline would cancel the request's context.
type body struct {
	io.ReadCloser
	rc     http.ResponseController
	bodies *Bodies
	once   sync.Once
}

func (r *body) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err == io.EOF {
		r.done()
		r.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// done forgets the body: it was read, or its handler returned.
func (r *body) done() {
	r.once.Do(func() {
		r.bodies.mu.Lock()
		delete(r.bodies.reading, r)
		r.bodies.mu.Unlock()
	})
}

// readBody reads a request body within the limits of Bodies.
func readBody(r *http.Request) ([]byte, error) {
	b, err := readAll(r.Body, r.ContentLength)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, realtime.LimitBodyBytes.Refuse(api.Errorf(api.CodePayloadTooLarge, "the body is larger than %d bytes", tooBig.Limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, api.Errorf(api.CodeInvalidJSON, "the body did not arrive in time")
	case err != nil:
		return nil, api.Errorf(api.CodeInvalidJSON, "reading the body: %v", err)
	}
	return b, nil
}

// readAll is io.ReadAll with a buffer of the declared length (limit
// refused longer ones), which then needs no growing.
func readAll(r io.Reader, length int64) ([]byte, error) {
	if length <= 0 || length > 1<<20 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, length+1) // +1: room to read EOF without growing
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // a body longer than declared
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
