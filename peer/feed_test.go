package peer

import (
	"context"
	"encoding/binary"
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
	send  map[uint32]func([]string) bool
	ended map[uint32]int
}

func (f *feeds) start(pid uint32, send func([]string) bool) (stop func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.send == nil {
		f.send, f.ended = map[uint32]func([]string) bool{}, map[uint32]int{}
	}
	f.send[pid] = send
	return sync.OnceFunc(func() { // as the store's, a stop that comes twice ends the feed once
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.send, pid)
		f.ended[pid]++
	})
}

// to returns the send of pid's feed, once it has begun (within 5 s).
func (f *feeds) to(t *testing.T, pid uint32) func([]string) bool {
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
// Close ends it on the other end. Both ends are in order. A feed needs
// the lease's secret and a listener, and a server without Feed has none.
func TestFeed(t *testing.T) {
	var f feeds
	url, s, _ := serveLinks(t, &Server{Feed: f.start}, false)

	got := make(chan string, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	followed := make(chan error, 1)
	go func() {
		_, err := Follow(ctx, url, secret, 7, nil, nil, func(text string, _ bool) {
			if text != "" { // a heartbeat that lets a wake-up go
				got <- text
			}
		})
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
	if err := <-followed; err != nil {
		t.Errorf("Follow ended with %v, want an end in order", err)
	}
	f.waitEnded(t, 7, 1)

	go func() {
		_, err := Follow(t.Context(), url, secret, 8, nil, nil, func(string, bool) {})
		followed <- err
	}()
	f.to(t, 8)
	closing, stop := context.WithTimeout(t.Context(), 5*time.Second)
	defer stop()
	s.Close(closing)
	if err := <-followed; err != nil {
		t.Errorf("Follow ended with %v as the sequencer closed, want an end in order", err)
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
// text sent before that, so that Follow ends without an error (nothing
// lost) once the feed has ended on the sequencer.
func TestFeedEndsInOrder(t *testing.T) {
	var f feeds
	url, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	for round := range 20 {
		pid := uint32(100 + round)
		var got []string
		ctx, cancel := context.WithCancel(t.Context())
		followed := make(chan error, 1)
		go func() {
			_, err := Follow(ctx, url, secret, pid, nil, nil, func(text string, _ bool) {
				if text != "" {
					got = append(got, text)
				}
			})
			followed <- err
		}()
		send := f.to(t, pid)
		var want []string
		for i := range 200 {
			want = append(want, fmt.Sprintf("=%d/%d %s", round, i, strings.Repeat("z", i*37%3000)))
			send(want[i : i+1])
		}
		cancel()
		if err := <-followed; err != nil {
			t.Fatalf("round %d: Follow ended with %v, want an end in order", round, err)
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

// TestFeedHeartbeat: an idle feed stays open on its heartbeats; one
// that carries nothing at all (its sequencer gone without a word) is
// taken as broken within heartbeatTimeout, and so is, by the sequencer,
// one whose instance sends nothing.
func TestFeedHeartbeat(t *testing.T) {
	oldBeat, oldTimeout := heartbeat, heartbeatTimeout
	heartbeat, heartbeatTimeout = 20*time.Millisecond, 500*time.Millisecond
	t.Cleanup(func() { heartbeat, heartbeatTimeout = oldBeat, oldTimeout })

	var f feeds
	url, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	ctx, cancel := context.WithTimeout(t.Context(), 5*heartbeatTimeout)
	defer cancel()
	start := time.Now()
	if _, err := Follow(ctx, url, secret, 1, nil, nil, func(string, bool) {}); err != nil || ctx.Err() == nil {
		t.Errorf("an idle feed ended with %v after %v, want it open until its context ended (%v), then in order",
			err, time.Since(start), 5*heartbeatTimeout)
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
	start = time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 10*heartbeatTimeout)
	defer cancel()
	opened, err := Follow(ctx, mute.URL, secret, 1, nil, nil, func(string, bool) {})
	if !opened || err == nil || ctx.Err() != nil {
		t.Errorf("a feed without frames: opened %v, %v; want opened, and broken", opened, err)
	}
	if d := time.Since(start); d > 5*heartbeatTimeout {
		t.Errorf("a feed without frames was taken as broken after %v", d)
	}

	conn, _, err := dial(url, secret, nil, FeedProtocol, "2") // reads, but never beats
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go io.Copy(io.Discard, conn)
	f.to(t, 2)
	f.waitEnded(t, 2, 1)
}

// TestFeedMoreEndsOnAHeartbeat: a text read together with a heartbeat
// after it is taken with more set, and the heartbeat then says that no
// text follows (an empty take with more unset), so that the wake-up left
// to the next text does not wait for one that is not coming.
func TestFeedMoreEndsOnAHeartbeat(t *testing.T) {
	oldTimeout := heartbeatTimeout
	heartbeatTimeout = time.Minute // no end of the feed lets the wake-up go
	t.Cleanup(func() { heartbeatTimeout = oldTimeout })
	seq := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		text := "=1 1 0 0\n"
		frames := binary.BigEndian.AppendUint32(nil, uint32(len(text)))
		frames = append(append(frames, text...), beat...)
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+FeedProtocol+"\r\n\r\n"+string(frames))
		io.Copy(io.Discard, conn)
	}))
	defer seq.Close()
	type call struct {
		text string
		more bool
	}
	calls := make(chan call, 10)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go Follow(ctx, seq.URL, secret, 1, nil, nil, func(text string, more bool) { calls <- call{text, more} })
	var got []call
	for {
		select {
		case c := <-calls:
			got = append(got, c)
			if !c.more {
				if got[0].text != "=1 1 0 0\n" {
					t.Errorf("takes %+v: the text first", got)
				}
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("takes %+v, and none with more unset", got)
		}
	}
}

// TestFeedPace: a feed at a pace holds what the sequencer sends until
// the pace has passed, and hands it over in one go (one wake-up: more
// set on every text but the last): at once when the pace goes back to
// 0, and when a shorter pace than the one it waits for has passed. A
// pace frame is taken whatever its value, up to maxPace.
func TestFeedPace(t *testing.T) {
	oldPace, oldBeat, oldTimeout := maxPace, heartbeat, heartbeatTimeout
	// No heartbeat within the test: held texts would hold them too.
	maxPace, heartbeat, heartbeatTimeout = time.Hour, time.Hour, 2*time.Hour
	t.Cleanup(func() { maxPace, heartbeat, heartbeatTimeout = oldPace, oldBeat, oldTimeout })
	var f feeds
	url, _, _ := serveLinks(t, &Server{Feed: f.start}, false)
	type take struct {
		text string
		more bool
	}
	got := make(chan take, 100)
	var pace Pace
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go Follow(ctx, url, secret, 3, nil, &pace, func(text string, more bool) { got <- take{text, more} })
	send := f.to(t, 3)
	// hold sets the pace to an hour and sends probes until one is held
	// (until the sequencer has read the pace, a probe comes through at
	// once), then texts, which must not come; it returns what is held.
	round := 0
	hold := func() (held []string) {
		t.Helper()
		pace.Set(time.Hour)
		deadline := time.Now().Add(10 * time.Second)
		for probe := 0; ; probe++ {
			if time.Now().After(deadline) {
				t.Fatalf("the sequencer still sends at once after %d probes in 10 s", probe)
			}
			held = []string{fmt.Sprintf("=probe %d/%d", round, probe)}
			send(held)
			select {
			case <-got:
				time.Sleep(time.Millisecond) // until the pace frame has gone, on a busy machine
				continue
			case <-time.After(500 * time.Millisecond):
			}
			break
		}
		for i := range 5 {
			held = append(held, fmt.Sprintf("=%d/%d", round, i))
			send(held[len(held)-1:])
			time.Sleep(2 * time.Millisecond)
		}
		select {
		case g := <-got:
			t.Fatalf("%+v came while the pace holds the feed", g)
		case <-time.After(100 * time.Millisecond):
		}
		round++
		return held
	}
	// takeAll takes want, in one go.
	takeAll := func(how string, want []string) {
		t.Helper()
		for i, w := range want {
			select {
			case g := <-got:
				if g.text != w || g.more != (i < len(want)-1) {
					t.Fatalf("%s, take %d: %+v, want %q with more %v", how, i, g, w, i < len(want)-1)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: text %d did not come", how, i)
			}
		}
	}
	held := hold()
	pace.Set(0)
	takeAll("at pace 0", held)
	held = hold()
	pace.Set(20 * time.Millisecond)
	takeAll("at a pace of 20 ms", held)
	pace.Set(0)
	send([]string{"=after"})
	takeAll("sent at pace 0", []string{"=after"})
}
