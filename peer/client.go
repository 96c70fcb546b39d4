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
	"time"
)

// ErrNotSent says that a request was not written whole to the
// sequencer, which therefore cannot have applied it.
var ErrNotSent = errors.New("the write was not sent to the sequencer")

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

	mu    sync.Mutex
	links map[string]*link // by sequencer URL and secret
}

// Forward sends req to the sequencer at url with its secret and returns
// its answer. The error wraps ErrNotSent when the request was not
// written whole, so the sequencer cannot have applied it; any other
// error (the link broke or the answer did not come within
// AnswerTimeout) leaves that unknown, but for ctx's own error, returned
// when the caller stopped waiting.
func (c *Client) Forward(ctx context.Context, url, secret string, req *Request) (*Answer, error) {
	l, err := c.link(ctx, url, secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSent, err)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = AnswerTimeout
	}
	return l.call(ctx, req, timeout)
}

// Close closes every link: requests waiting on them fail.
func (c *Client) Close() {
	c.mu.Lock()
	links := c.links
	c.links = nil
	c.mu.Unlock()
	for _, l := range links {
		l.fail(errors.New("the client closed"))
	}
}

// link returns the link to url, made if there is none: callers that
// ask at once wait for the same one. Making one retires the links to
// other sequencers (or to an earlier lease of the same one): each closes
// once its last answer has come.
func (c *Client) link(ctx context.Context, url, secret string) (*link, error) {
	key := url + " " + secret
	c.mu.Lock()
	if c.links == nil {
		c.links = map[string]*link{}
	}
	l := c.links[key]
	if l == nil {
		for _, old := range c.links {
			old.retire()
		}
		l = &link{ready: make(chan struct{}), pending: map[uint64]*call{}}
		c.links[key] = l
		go func() {
			conn, br, err := dial(url, secret)
			l.mu.Lock()
			if l.err != nil && conn != nil { // retired or closed meanwhile
				conn.Close()
				err = l.err
			}
			l.conn, l.err = conn, err
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
// a link.
func dial(rawURL, secret string) (net.Conn, *bufio.Reader, error) {
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
		conn, err = (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: u.Hostname()}}).Dial("tcp", host)
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
	req.Header.Set("Upgrade", Protocol)
	req.Header.Set(SecretHeader, secret)
	br := bufio.NewReaderSize(conn, 64<<10)
	if err = req.Write(conn); err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(br, req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != Protocol {
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

// link is one upgraded connection to a sequencer. Callers queue their
// frames in out; the first of them finds no write under way and writes
// what is queued, again until nothing is, so that frames queued
// meanwhile share a system call.
type link struct {
	ready chan struct{} // closed once conn or err is set

	mu      sync.Mutex
	conn    net.Conn
	err     error // why the link failed, once it has: no call is taken then
	nextID  uint64
	pending map[uint64]*call
	out     []byte  // frames queued, not yet being written
	queued  []*call // their calls, in order
	writing bool    // a caller is writing frames
	spare   []byte  // the buffer of the last write, for reuse
	retired bool    // takes no more calls, and closes once none waits
	// deadline is the write deadline set on conn: a sequencer that stops
	// reading fails the link then. It is moved on only once half of it
	// has passed, not at every write.
	deadline time.Time
}

// call is a request waiting for its answer.
type call struct {
	end int // where its frame ends in out
	// sent: its frame may have reached the sequencer (it is being
	// written, or was written whole)
	sent bool
	done chan struct{} // closed with ans or err set
	ans  *Answer
	err  error
}

// call sends req and waits for its answer.
func (l *link) call(ctx context.Context, req *Request, timeout time.Duration) (*Answer, error) {
	c := &call{done: make(chan struct{})}
	l.mu.Lock()
	if l.err != nil || l.retired {
		err := l.err
		if err == nil {
			err = errRetired
		}
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrNotSent, err)
	}
	l.nextID++
	req.ID = l.nextID
	var err error
	if l.out, err = appendFrame(l.out, req); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrNotSent, err)
	}
	c.end = len(l.out)
	l.pending[req.ID] = c
	l.queued = append(l.queued, c)
	if !l.writing {
		l.writing = true
		l.flush()
	}
	l.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.ans, c.err
	case <-timer.C:
		l.forget(req.ID)
		return nil, errors.New("the sequencer did not answer within " + timeout.String())
	case <-ctx.Done():
		l.forget(req.ID)
		return nil, ctx.Err()
	}
}

// flush writes the queued frames until none is left; l.mu is held, and
// let go during each write. A call whose frame is being written counts
// as sent if the link fails meanwhile: the sequencer may read the frame
// before the write returns.
func (l *link) flush() {
	for len(l.out) > 0 && l.err == nil {
		buf, calls := l.out, l.queued
		l.out, l.queued, l.spare = l.spare[:0], nil, nil
		for _, c := range calls {
			c.sent = true // until the write says otherwise: the link may fail meanwhile
		}
		if now := time.Now(); l.deadline.Sub(now) < AnswerTimeout/2 {
			l.deadline = now.Add(AnswerTimeout)
			l.conn.SetWriteDeadline(l.deadline)
		}
		l.mu.Unlock()
		n, err := l.conn.Write(buf)
		l.mu.Lock()
		for _, c := range calls {
			c.sent = c.end <= n
		}
		if err != nil {
			l.failLocked(err)
		}
		l.spare = buf
	}
	l.writing = false
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
				c := l.pending[a.ID]
				delete(l.pending, a.ID)
				if c != nil {
					c.ans = a
					close(c.done)
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

// errRetired ends a link that a link to another sequencer replaced.
var errRetired = errors.New("the link was replaced by one to the current sequencer")

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
// frame was not written whole.
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
	if l.conn != nil {
		l.conn.Close()
	}
	for id, c := range l.pending {
		if c.sent {
			c.err = l.err
		} else {
			c.err = fmt.Errorf("%w: %v", ErrNotSent, l.err)
		}
		close(c.done)
		delete(l.pending, id)
	}
}
