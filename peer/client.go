package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotSent says that a request was not written whole to the
// sequencer, or that the sequencer did not take it: it cannot have
// applied it.
var ErrNotSent = errors.New("the write was not sent to the sequencer")

// ErrNotForwardable says, besides ErrNotSent, that the reason lies with
// the request or this instance, not with the sequencer: the request
// cannot be encoded (a string that is not UTF-8, a frame too large), or
// its link was replaced by one to a newer sequencer as it was sent.
var ErrNotForwardable = errors.New("the write cannot be forwarded")

// Timeouts of the instance's side: a link that cannot be made within
// DialTimeout is taken as a sequencer gone (its writes are served where
// they arrived), and a request not answered within AnswerTimeout (a
// commit takes milliseconds) as lost.
const (
	DialTimeout   = time.Second
	AnswerTimeout = 10 * time.Second
)

// Client forwards requests to sequencers, over one link to each. It is
// safe for concurrent use.
type Client struct {
	// Timeout is how long a request waits for its answer; 0 is
	// AnswerTimeout.
	Timeout time.Duration
	// TLS configures links to https:// sequencers; nil trusts the
	// system's roots.
	TLS *tls.Config

	mu     sync.Mutex
	links  map[string]*link // by sequencer URL and secret
	closed bool
}

// Forward sends req to the sequencer at url with its secret and returns
// its answer. The error wraps ErrNotSent when the request was not
// written whole, or the sequencer answered that it did not take it, so
// it cannot have applied it; any other error (the link broke, or the
// answer did not come within the timeout, which fails the link) leaves
// that unknown, but for ctx's own error, returned when the caller
// stopped waiting.
func (c *Client) Forward(ctx context.Context, url, secret string, req *Request) (*Answer, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = AnswerTimeout
	}
	l, err := c.link(ctx, url, secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	return l.call(ctx, req, timeout)
}

// Close closes every link: requests waiting on them fail, and later
// ones are not sent.
func (c *Client) Close() {
	c.mu.Lock()
	links := c.links
	c.links, c.closed = nil, true
	c.mu.Unlock()
	for _, l := range links {
		l.fail(errors.New("the client closed"))
	}
}

// link returns the link to url, made if there is none that takes calls:
// callers that ask at once wait for the same one. Making one retires the
// links to other sequencers (or to an earlier lease of the same one):
// each closes once its last answer has come.
func (c *Client) link(ctx context.Context, url, secret string) (*link, error) {
	key := url + " " + secret
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("the client is closed")
	}
	if c.links == nil {
		c.links = map[string]*link{}
	}
	l := c.links[key]
	if l == nil || !l.usable() {
		var old []*link
		for k, o := range c.links {
			old = append(old, o)
			delete(c.links, k)
		}
		defer func() { // not under c.mu: a TLS link says goodbye as it closes
			for _, o := range old {
				o.retire()
			}
		}()
		l = &link{ready: make(chan struct{}), pending: map[uint64]*call{}}
		c.links[key] = l
		go func() {
			conn, br, err := dial(url, secret, c.TLS, Protocol, "")
			l.mu.Lock()
			if l.err != nil && conn != nil { // retired or closed meanwhile
				conn.Close()
				err = l.err
			}
			if err == nil {
				l.conn, l.w = conn, newWriter(conn, l.fail)
			}
			l.err = err
			l.mu.Unlock()
			close(l.ready)
			if err == nil {
				l.read(br)
			}
			c.mu.Lock()
			if c.links[key] == l {
				delete(c.links, key)
			}
			c.mu.Unlock()
		}()
	}
	c.mu.Unlock()
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	return l, nil
}

// dial connects to the sequencer at url and upgrades the connection to
// protocol: a link, or a feed for the listener's backend pid.
func dial(rawURL, secret string, tlsConfig *tls.Config, protocol, pid string) (net.Conn, *bufio.Reader, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	host := net.JoinHostPort(u.Hostname(), port)
	d := &net.Dialer{Timeout: DialTimeout}
	var conn net.Conn
	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", host)
	} else {
		conn, err = d.Dial("tcp", host)
	}
	if err != nil {
		return nil, nil, err
	}
	conn.SetDeadline(time.Now().Add(DialTimeout))
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(rawURL, "/")+Path, nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", protocol)
	req.Header.Set(SecretHeader, secret)
	if pid != "" {
		req.Header.Set(ListenerHeader, pid)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	if err = req.Write(conn); err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(br, req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != protocol {
				err = fmt.Errorf("the sequencer refused a link: %s", resp.Status)
			}
		}
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// link is one upgraded connection to a sequencer: its writer sends the
// callers' frames, its reader hands each answer to its caller.
type link struct {
	ready chan struct{} // closed once conn or err is set
	ids   atomic.Uint64

	mu      sync.Mutex
	conn    net.Conn
	w       *writer
	err     error // why the link failed, once it has: no call is taken then
	pending map[uint64]*call
	retired bool // takes no more calls, and closes once none waits
}

// call is a request waiting for its answer.
type call struct {
	sent atomic.Bool   // its frame may have reached the sequencer (writer's marker)
	done chan struct{} // closed with ans or err set
	ans  *Answer
	err  error
}

// usable reports whether the link takes calls (or will, once made).
func (l *link) usable() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err == nil && !l.retired
}

// call sends req and waits for its answer. A call not answered within
// timeout fails the link: a sequencer that stopped answering would
// otherwise take every later write to its 503.
func (l *link) call(ctx context.Context, req *Request, timeout time.Duration) (*Answer, error) {
	req.ID = l.ids.Add(1)
	frame, err := appendFrame(nil, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %v", ErrNotSent, ErrNotForwardable, err)
	}
	c := &call{done: make(chan struct{})}
	l.mu.Lock()
	switch {
	case l.err != nil:
		err = fmt.Errorf("%w: %w", ErrNotSent, l.err)
	case l.retired:
		err = fmt.Errorf("%w: %w", ErrNotSent, errRetired)
	default:
		l.pending[req.ID] = c
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// A writer that failed meanwhile queues nothing; the link's failure
	// then ends the call, as not sent.
	l.w.queue(frame, &c.sent)

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		select {
		case <-c.done: // answered as the timer fired
		default:
			l.fail(errors.New("the sequencer did not answer within " + timeout.String()))
		}
	case <-ctx.Done():
		select {
		case <-c.done:
		default:
			l.forget(req.ID)
			return nil, ctx.Err()
		}
	}
	<-c.done // fail ends every call still pending
	if c.err == nil && c.ans.Refused {
		return nil, fmt.Errorf("%w: the sequencer is closing", ErrNotSent)
	}
	return c.ans, c.err
}

// read takes answers from the link until it fails, and hands each to
// its call.
func (l *link) read(br *bufio.Reader) {
	var buf []byte
	for {
		msg, err := readFrame(br, buf)
		if err == nil {
			buf = msg
			var a *Answer
			if a, err = decodeAnswer(msg); err == nil {
				l.mu.Lock()
				if c := l.pending[a.ID]; c != nil {
					delete(l.pending, a.ID)
					c.ans = a
					close(c.done)
				}
				if a.Refused { // the sequencer is closing: later calls go elsewhere
					l.retired = true
				}
				l.closeIfRetired()
				l.mu.Unlock()
				continue
			}
		}
		l.fail(err)
		return
	}
}

// forget drops a call that its caller stopped waiting for.
func (l *link) forget(id uint64) {
	l.mu.Lock()
	delete(l.pending, id)
	l.closeIfRetired()
	l.mu.Unlock()
}

// errRetired ends a link that a link to another sequencer replaced, or
// whose sequencer is closing.
var errRetired = fmt.Errorf("%w: the link was replaced by one to the current sequencer", ErrNotForwardable)

// retire closes the link once no call waits on it, and takes no more.
func (l *link) retire() {
	l.mu.Lock()
	l.retired = true
	l.closeIfRetired()
	l.mu.Unlock()
}

func (l *link) closeIfRetired() {
	if l.retired && len(l.pending) == 0 {
		l.failLocked(errRetired)
	}
}

// fail ends the link: every call waiting fails, with ErrNotSent if its
// frame cannot have reached the sequencer.
func (l *link) fail(err error) {
	l.mu.Lock()
	l.failLocked(err)
	l.mu.Unlock()
}

func (l *link) failLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = fmt.Errorf("the link to the sequencer failed: %w", err)
	if l.w != nil {
		l.w.fail() // from here on, a frame's marker says for good whether it may be written
		l.conn.Close()
	}
	for id, c := range l.pending {
		if c.sent.Load() {
			c.err = l.err
		} else {
			c.err = fmt.Errorf("%w: %v", ErrNotSent, l.err)
		}
		close(c.done)
		delete(l.pending, id)
	}
}
