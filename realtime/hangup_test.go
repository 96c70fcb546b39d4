package realtime_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// tcpClient is the client end of a detached stream over real TCP, and
// the frames it reads.
type tcpClient struct {
	conn   *net.TCPConn
	frames <-chan string
	stream *realtime.Stream
}

// hangupFixture is a hub whose heartbeat never comes within a test, with
// an observer, and a listener whose connections the hub's streams take.
type hangupFixture struct {
	*fixture
	feed *testFeed
	ln   net.Listener
}

func newHangupFixture(t *testing.T) *hangupFixture {
	return newHangupFixtureWith(t, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	})
}

func newHangupFixtureWith(t *testing.T, cfg realtime.HubConfig) *hangupFixture {
	feed := &testFeed{watched: make(map[*realtime.Stream][]realtime.Watch)}
	f := newFixture(t, cfg, func(h *realtime.Hub) { h.SetPresence(feed, feed) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &hangupFixture{fixture: f, feed: feed, ln: ln}
}

// open opens a stream of user on event "chat", detached on the server end
// of a new TCP connection, and returns its client once it has read the
// ready frame.
func (f *hangupFixture) open(t *testing.T, user string) *tcpClient {
	t.Helper()
	s, err := f.hub.Open(context.Background(), api.User{ID: user}, []api.Subscription{{Event: "chat"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := f.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Detach(context.Background(), server); err != nil {
		server.Close()
		t.Fatal(err)
	}
	c := &tcpClient{conn: client.(*net.TCPConn), frames: readFrames(client), stream: s}
	if got := next(t, c.frames, true); !strings.HasPrefix(got, "ready ") {
		t.Fatalf("first frame %q", got)
	}
	return c
}

// closed returns how many streams the observer saw close.
func (f *hangupFixture) closed() int {
	f.feed.mu.Lock()
	defer f.feed.mu.Unlock()
	return len(f.feed.closed)
}

// hangUp closes the client's connection: with a FIN, or with a RST when
// reset is set (SO_LINGER 0).
func (c *tcpClient) hangUp(t *testing.T, reset bool) {
	t.Helper()
	if reset {
		if err := c.conn.SetLinger(0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.conn.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHangup: a detached stream whose client closes the connection ends
// within a few seconds though no heartbeat or change comes to write, and
// the observer hears of it: a client that closes (FIN), one that resets
// (RST), and one that sent bytes first (a pipelined request, which must
// not hide the close behind it).
func TestHangup(t *testing.T) {
	for _, c := range []struct {
		name        string
		reset, send bool
	}{
		{"close", false, false},
		{"reset", true, false},
		{"bytes then close", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newHangupFixture(t)
			client := f.open(t, "alice")
			if c.send {
				if _, err := client.conn.Write([]byte("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(1500 * time.Millisecond) // a look or two finds bytes, not a close
				if realtime.StreamErr(client.stream) != nil || f.hub.Stats.Streams.Load() != 1 {
					t.Fatalf("a client that sent bytes was taken for gone: %v", realtime.StreamErr(client.stream))
				}
			}
			start := time.Now()
			client.hangUp(t, c.reset)
			waitFor(t, func() bool { return f.hub.Stats.Streams.Load() == 0 && f.closed() == 1 })
			t.Logf("ended %v after the client closed", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestHangupMany: of many detached streams, those whose clients close at
// once (half with a FIN, half with a RST) all end within a few seconds,
// and those whose clients stay are untouched: still open, and they get
// the next change.
func TestHangupMany(t *testing.T) {
	const leaving, staying = 200, 20
	f := newHangupFixture(t)
	var gone, kept []*tcpClient
	for i := range leaving + staying {
		c := f.open(t, "user"+strings.Repeat("x", i%3))
		if i%11 == 0 && len(kept) < staying || len(gone) == leaving {
			kept = append(kept, c)
		} else {
			gone = append(gone, c)
		}
	}
	var wg sync.WaitGroup
	for i, c := range gone {
		wg.Go(func() { c.hangUp(t, i%2 == 0) })
	}
	wg.Wait()
	waitFor(t, func() bool { return f.hub.Stats.Streams.Load() == staying && f.closed() == leaving })
	for _, c := range gone {
		if !realtime.StreamEnded(c.stream) {
			t.Fatal("a stream whose client left is still open")
		}
	}
	time.Sleep(1500 * time.Millisecond) // another look or two
	if n := f.hub.Stats.Streams.Load(); n != staying || f.closed() != leaving {
		t.Fatalf("%d streams open, %d closed; want %d and %d", n, f.closed(), staying, leaving)
	}
	if _, err := f.events.Publish(context.Background(), api.User{ID: "bob"}, "chat", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range kept {
		if realtime.StreamEnded(c.stream) {
			t.Fatalf("a stream whose client stayed ended: %v", realtime.StreamErr(c.stream))
		}
		if got := next(t, c.frames, true); !strings.HasPrefix(got, `event {"name":"chat"`) {
			t.Fatalf("a client that stayed read %q", got)
		}
	}
}

// TestHangupBeforeRefusal: a client that closes its stream and opens
// another at once is not refused for the one it closed, by
// MAX_STREAMS_PER_USER nor by MAX_STREAMS: the hub looks for streams whose
// client went before it refuses, rather than at its next look (which
// never comes here). A stream whose client stays still counts.
func TestHangupBeforeRefusal(t *testing.T) {
	t.Cleanup(realtime.SetHangupInterval(time.Hour))
	f := newHangupFixtureWith(t, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
		MaxStreams: 2, MaxStreamsPerUser: 1,
	})
	// reopen opens a stream of user within 5 s (the client's close
	// reaches the server's socket on its own time), or fails.
	reopen := func(user string) *tcpClient {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			s, err := f.hub.Open(context.Background(), api.User{ID: user}, []api.Subscription{{Event: "chat"}}, "")
			if err == nil {
				s.Abandon()
				return f.open(t, user)
			}
		}
		t.Fatalf("a stream of %s was refused for 5 s after its client closed the last one", user)
		return nil
	}
	alice := f.open(t, "alice")
	if _, err := f.hub.Open(context.Background(), api.User{ID: "alice"}, nil, ""); api.ErrorCode(err) != api.CodeLimitExceeded {
		t.Fatalf("alice's second stream: %v, want LIMIT_EXCEEDED", err)
	}
	alice.hangUp(t, false)
	alice = reopen("alice") // MAX_STREAMS_PER_USER
	f.open(t, "bob")
	if _, err := f.hub.Open(context.Background(), api.User{ID: "carol"}, nil, ""); api.ErrorCode(err) != api.CodeUnavailable {
		t.Fatalf("a third stream: %v, want UNAVAILABLE", err)
	}
	alice.hangUp(t, true)
	reopen("carol") // MAX_STREAMS
	if _, err := f.hub.Open(context.Background(), api.User{ID: "dave"}, nil, ""); api.ErrorCode(err) != api.CodeUnavailable {
		t.Fatalf("a third stream while bob's and carol's clients stay: %v, want UNAVAILABLE", err)
	}
}
