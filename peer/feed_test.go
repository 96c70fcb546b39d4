package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// feeds is a Server's Feed that keeps its feeds by listener, as the
// store's relay does.
type feeds struct {
	mu    sync.Mutex
	send  map[uint32]func([]string)
	ended map[uint32]int
}

func (f *feeds) start(pid uint32, send func([]string)) (stop func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.send == nil {
		f.send, f.ended = map[uint32]func([]string){}, map[uint32]int{}
	}
	f.send[pid] = send
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.send, pid)
		f.ended[pid]++
	}
}

// to returns the send of pid's feed, once it has begun (within 5 s).
func (f *feeds) to(t *testing.T, pid uint32) func([]string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		send := f.send[pid]
		f.mu.Unlock()
		if send != nil {
			return send
		}
	}
	t.Fatalf("no feed to %d", pid)
	return nil
}

// waitEnded waits (5 s at most) until pid's feed has ended n times.
func (f *feeds) waitEnded(t *testing.T, pid uint32, n int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		ended := f.ended[pid]
		f.mu.Unlock()
		if ended >= n {
			return
		}
	}
	t.Fatalf("the feed to %d did not end", pid)
}

// TestFeed: a feed carries the texts sent to it, in order and whole
// (sent one by one and many at once, small and large), until the other
// end closes it, which ends it on the sequencer too; the sequencer's
// Close ends it on the other end. A feed needs the lease's secret and a
// listener, and a server without Feed has none.
func TestFeed(t *testing.T) {
	var f feeds
	url, s, _ := serveLinks(t, &Server{Feed: f.start}, false)

	got := make(chan string, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	followed := make(chan error, 1)
	go func() {
		_, err := Follow(ctx, url, secret, 7, nil, func(text string, _ bool) { got <- text })
		followed <- err
	}()
	send := f.to(t, 7)
	var want []string
	for i := range 300 {
		want = append(want, fmt.Sprintf("=%d %s", i, strings.Repeat("x", i*i%9000)))
	}
	send(want[:1])
	send(want[1:150])
	for i := 150; i < len(want); i++ {
		send(want[i : i+1])
	}
	for i, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("text %d: %d bytes, want %d", i, len(g), len(w))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("text %d did not come", i)
		}
	}
	cancel()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow ended with %v, want its context's end", err)
	}
	f.waitEnded(t, 7, 1)

	go func() {
		_, err := Follow(t.Context(), url, secret, 8, nil, func(string, bool) {})
		followed <- err
	}()
	f.to(t, 8)
	closing, stop := context.WithTimeout(t.Context(), 5*time.Second)
	defer stop()
	s.Close(closing)
	if err := <-followed; err == nil {
		t.Error("Follow ended without an error as the sequencer closed")
	}
	f.waitEnded(t, 8, 1)

	fed, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	unfed, _, _ := sequencerServer(t, nil, false)
	for _, c := range []struct {
		name, secret, pid string
		feed              bool
	}{
		{"another secret", "guess", "9", true},
		{"no listener", secret, "", true},
		{"a listener that is not one", secret, "x", true},
		{"no Feed", secret, "9", false},
	} {
		url := unfed
		if c.feed {
			url = fed
		}
		req, _ := http.NewRequest(http.MethodGet, url+Path, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", FeedProtocol)
		req.Header.Set(SecretHeader, c.secret)
		req.Header.Set(ListenerHeader, c.pid)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s, want 404", c.name, resp.Status)
		}
	}
}

// TestFeedBacklog: a feed whose other end does not read ends once more
// than maxBacklog waits, rather than hold ever more.
func TestFeedBacklog(t *testing.T) {
	var f feeds
	url, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	conn, _, err := dial(url, secret, nil, FeedProtocol, "5") // never read
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := f.to(t, 5)
	text := []string{strings.Repeat("y", 64<<10)}
	for range 2 * maxBacklog / len(text[0]) {
		send(text)
	}
	f.waitEnded(t, 5, 1)
}

// TestFeedEndsInOrder: a feed that its instance closes ends in order: the
// sequencer stops sending before it closes, and the instance reads every
// text sent before that, so that Follow ends with its context's error
// (nothing lost) once the feed has ended on the sequencer.
func TestFeedEndsInOrder(t *testing.T) {
	var f feeds
	url, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	for round := range 20 {
		pid := uint32(100 + round)
		var got []string
		ctx, cancel := context.WithCancel(t.Context())
		followed := make(chan error, 1)
		go func() {
			_, err := Follow(ctx, url, secret, pid, nil, func(text string, _ bool) { got = append(got, text) })
			followed <- err
		}()
		send := f.to(t, pid)
		var want []string
		for i := range 200 {
			want = append(want, fmt.Sprintf("=%d/%d %s", round, i, strings.Repeat("z", i*37%3000)))
			send(want[i : i+1])
		}
		cancel()
		if err := <-followed; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Follow ended with %v, want its context's end", round, err)
		}
		f.mu.Lock()
		ended := f.ended[pid]
		f.mu.Unlock()
		if ended != 1 {
			t.Fatalf("round %d: Follow returned before the feed ended on the sequencer", round)
		}
		if len(got) != len(want) || got[len(got)-1] != want[len(want)-1] {
			t.Fatalf("round %d: %d texts taken of %d sent", round, len(got), len(want))
		}
	}
}

// TestFeedHeartbeat: an idle feed stays open on its heartbeats, and one
// that carries nothing at all (its sequencer gone without a word) is
// taken as broken within heartbeatTimeout.
func TestFeedHeartbeat(t *testing.T) {
	oldBeat, oldTimeout := heartbeat, heartbeatTimeout
	heartbeat, heartbeatTimeout = 20*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { heartbeat, heartbeatTimeout = oldBeat, oldTimeout })

	var f feeds
	url, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	ctx, cancel := context.WithTimeout(t.Context(), 5*heartbeatTimeout)
	defer cancel()
	if _, err := Follow(ctx, url, secret, 1, nil, func(string, bool) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an idle feed ended with %v, want it open until its context ended", err)
	}

	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+FeedProtocol+"\r\n\r\n")
		io.Copy(io.Discard, conn) // until the other end gives up
	}))
	defer mute.Close()
	start := time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 10*heartbeatTimeout)
	defer cancel()
	opened, err := Follow(ctx, mute.URL, secret, 1, nil, func(string, bool) {})
	if !opened || err == nil || ctx.Err() != nil {
		t.Errorf("a feed without frames: opened %v, %v; want opened, and broken", opened, err)
	}
	if d := time.Since(start); d > 5*heartbeatTimeout {
		t.Errorf("a feed without frames was taken as broken after %v", d)
	}
}
