package handlers

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// PeerHeader carries the sequencer's secret on a write that an instance
// forwarded to it (PEER_URL): the sequencer serves such a write without
// forwarding it again and without counting it against the rate limit,
// which the forwarding instance applied to the client.
const PeerHeader = "X-Switchboard-Peer"

// Sequencer is the lease of the instance whose group commits take every
// instance's writes (db/postgres's Sequencer).
type Sequencer interface {
	// Holder returns where to forward a write and the secret to send with
	// it; ok is false when the write is served here.
	Holder() (url, token string, ok bool)
	// Unreachable says that url could not be connected to.
	Unreachable(url string)
	// Peer reports whether token is a peer's secret.
	Peer(token string) bool
	// Holds reports whether this instance is the sequencer.
	Holds() bool
}

// forwardClient sends forwarded writes. A connection that cannot be made
// within a second is taken as an instance gone: the write is served here.
var forwardClient = &http.Client{
	Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       time.Minute,
		ResponseHeaderTimeout: 30 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// hopHeaders are a request's headers about its own connection, which a
// forwarded write does not carry (Expect too: the body has been read).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Expect"}

// peers marks a request that carries a peer's secret (reqState.peer).
func peers(seq Sequencer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if seq == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if t := r.Header.Get(PeerHeader); t != "" && seq.Peer(t) {
				if st := stateFrom(r); st != nil {
					st.peer = true
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// forward sends a write to the sequencer and answers what it answered.
// It runs after authentication and the rate limit, which the sequencer
// applies again but for the rate (peers). A write that carries
// PeerHeader, valid or not, is never forwarded again. A write is served
// here when there is no sequencer to send it to, or when the sequencer
// could not be connected to (it was not sent); one whose answer was lost
// after it was sent is answered 503 UNAVAILABLE, since it may have been
// applied.
func forward(seq Sequencer, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if seq == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			url, token, ok := seq.Holder()
			if !ok || r.Header.Get(PeerHeader) != "" {
				next.ServeHTTP(w, r)
				return
			}
			body, err := readBody(r)
			if err != nil {
				writeError(w, r, err)
				return
			}
			req, err := http.NewRequestWithContext(r.Context(), r.Method, url+r.URL.RequestURI(), bytes.NewReader(body))
			if err != nil {
				writeError(w, r, err)
				return
			}
			req.Header = r.Header.Clone()
			for _, k := range hopHeaders { // the client's hop, not the peer's
				delete(req.Header, k)
			}
			req.Header.Set(PeerHeader, token)
			if st := stateFrom(r); st != nil {
				req.Header.Set(RequestIDHeader, st.id) // the two log lines share it
			}
			resp, err := forwardClient.Do(req)
			switch {
			case unsent(err):
				seq.Unreachable(url)
				m.forwarded("served_here")
				r.Body = io.NopCloser(bytes.NewReader(body))
				next.ServeHTTP(w, r)
				return
			case err != nil && r.Context().Err() != nil: // the client went away
				return
			case err != nil:
				m.forwarded("lost")
				writeError(w, r, api.Errorf(api.CodeUnavailable,
					"the write was sent to the sequencer instance, whose answer did not come (%v); it may have been applied", err))
				return
			}
			defer resp.Body.Close()
			m.forwarded("forwarded")
			h := w.Header()
			for k, v := range resp.Header {
				switch k {
				case RequestIDHeader, "Date", "Connection", "Keep-Alive":
					continue
				}
				h[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		})
	}
}

// unsent reports whether err says that a forwarded write never reached
// the sequencer: no connection could be made, or the sequencer closed an
// idle connection as the write was sent on it (net/http retries only
// requests that may be sent twice, which a write is not, and reports
// this case in the text of an unexported error; a Go server that closes
// an idle connection has not read what arrives on it).
func unsent(err error) bool {
	var op *net.OpError
	return err != nil && (errors.As(err, &op) && op.Op == "dial" || strings.Contains(err.Error(), "server closed idle connection"))
}
