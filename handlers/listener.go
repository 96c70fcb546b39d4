package handlers

import (
	"bytes"
	"net"
	"net/http"
	"strconv"

	"github.com/switchboard-dev/switchboard/api"
)

// net/http answers a request it cannot parse (headers over MaxHeaderBytes,
// a malformed request line or URL) itself, before any handler runs, in
// text/plain. Listener turns those answers into problem+json like every
// other error. They are recognised by the head net/http writes for them
// and for nothing else: the status line, then exactly these headers.
const plainHead = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Listener wraps ln so that the HTTP server's own error answers are
// problem+json.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn{c}, nil
}

// conn rewrites net/http's plain-text error answers as they are written;
// each is one Write on the raw connection.
type conn struct{ net.Conn }

// NetConn returns the connection it wraps, as tls.Conn's does: a link
// between instances (package peer) half-closes it as the server stops.
func (c conn) NetConn() net.Conn { return c.Conn }

func (c conn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return c.Conn.Write(p)
	}
	line, rest, ok := bytes.Cut(p, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(rest, []byte(plainHead[2:])) {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(problemAnswer(line, rest[len(plainHead)-2:])); err != nil {
		return 0, err
	}
	return len(p), nil
}

// problemAnswer builds the problem+json answer for net/http's status line
// and plain-text body.
func problemAnswer(line, text []byte) []byte {
	status, _ := strconv.Atoi(string(line[len("HTTP/1.1 ") : len("HTTP/1.1 ")+3]))
	e := api.Errorf(api.CodeInvalidParameter, "the request line, its URL or its headers are malformed")
	if _, reason, ok := bytes.Cut(text, []byte(": ")); ok {
		e.Detail += ": " + string(reason)
	}
	if status == http.StatusRequestHeaderFieldsTooLarge {
		e = api.Errorf(api.CodePayloadTooLarge, "the request's headers are larger than the server accepts")
	}
	id := newRequestID()
	body := problem(status, e, id)
	b := []byte("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b = append(b, RequestIDHeader+": "+id+"\r\n"...)
	b = append(b, "Content-Type: application/problem+json\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}
