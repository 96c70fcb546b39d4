package handlers

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	neturl "net/url"
	"sync/atomic"
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
	// Unreachable passes over url for a while: a write could not be sent
	// to it, or its answer did not come; and Reached says it answered.
	Unreachable(url string)
	Reached(url string)
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
		TLSHandshakeTimeout:   time.Second,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       time.Minute,
		ResponseHeaderTimeout: 10 * time.Second, // a write's commit takes milliseconds
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// hopHeaders are a request's headers about its own connection, which a
// forwarded write does not carry (Expect too: the body has been read;
// Idempotency-Key would let net/http send the write twice, see send).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Expect", "Idempotency-Key", "X-Idempotency-Key"}

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
// here when there is no sequencer to send it to, or when it could not be
// sent whole (no connection, for one): the sequencer cannot have applied
// it. One sent whole whose answer did not come, or came from something
// that is not a Switchboard server, is answered 503 UNAVAILABLE, since
// it may have been applied, and the sequencer is passed over for a while.
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
			id := stateFrom(r).id
			resp, wrote, err := send(r, url, token, id, body)
			switch {
			case err != nil && r.Context().Err() != nil: // the client went away
				return
			case err != nil && !wrote:
				seq.Unreachable(url)
				fallthrough
			case err == nil && refusedUnread(resp):
				if resp != nil {
					resp.Body.Close()
				}
				m.forwarded("served_here")
				r.Body = io.NopCloser(bytes.NewReader(body))
				next.ServeHTTP(w, r)
				return
			case err == nil && resp.Header.Get(RequestIDHeader) != id:
				resp.Body.Close()
				err = errors.New("the answer is not a Switchboard server's (no X-Request-Id of the request)")
			}
			if err != nil {
				seq.Unreachable(url)
				m.forwarded("lost")
				loggerFrom(r).Warn("a forwarded write's answer did not come: answered 503", "sequencer", url, "err", err)
				writeError(w, r, api.Errorf(api.CodeUnavailable,
					"the write was sent to the instance that commits writes, whose answer did not come; it may have been applied"))
				return
			}
			defer resp.Body.Close()
			seq.Reached(url)
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

// send forwards r with body to the sequencer at url. wrote reports
// whether the request was written whole on the last attempt: if not, the
// sequencer cannot have applied it. The client's Idempotency-Key headers
// are not sent, so that net/http never sends the write a second time
// after a failure once written (it retries only what was not written,
// and what it may send twice).
func send(r *http.Request, url, token, id string, body []byte) (resp *http.Response, wrote bool, err error) {
	var written atomic.Bool
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		// Each attempt starts unwritten: net/http sends a write again only
		// after an attempt that wrote nothing of it.
		GetConn: func(string) { written.Store(false) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				written.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, r.Method, url+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.Header = r.Header.Clone()
	for _, k := range hopHeaders {
		delete(req.Header, k)
	}
	req.Header.Set(PeerHeader, token)
	req.Header.Set(RequestIDHeader, id) // the two log lines share it, and the answer echoes it
	resp, err = forwardClient.Do(req)
	if err != nil && closedIdle(err) {
		return nil, false, err
	}
	return resp, written.Load(), err
}

// refusedUnread reports whether resp is net/http's own refusal of a
// request it did not read (headers too large, a malformed request),
// which handlers.Listener answers as problem+json with Connection:
// close and a request id of its own: what the forward added (a header or
// two) may have tipped it, so the write is served here.
func refusedUnread(resp *http.Response) bool {
	return (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge) &&
		resp.Close && resp.Header.Get("Content-Type") == "application/problem+json"
}

// closedIdle reports whether err is net/http's "server closed idle
// connection": the sequencer closed a kept-alive connection as the write
// was sent on it. A Go server reads nothing more from a connection it
// closes as idle, so the write was not applied (net/http says so only in
// the text of an unexported error).
func closedIdle(err error) bool {
	var ue *neturl.Error
	return errors.As(err, &ue) && ue.Err != nil && ue.Err.Error() == "http: server closed idle connection"
}
