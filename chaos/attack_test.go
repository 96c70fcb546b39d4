package chaos

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// attack runs hostile clients against one server, each in goroutines of
// its own; what they find wrong is kept in problems.
type attack struct {
	t        *testing.T
	p        *proc
	host     string
	wg       sync.WaitGroup
	problems sync.Map
}

func (a *attack) run(f func()) {
	a.wg.Add(1)
	go func() { defer a.wg.Done(); f() }()
}

func (a *attack) fail(format string, args ...any) {
	a.problems.Store(fmt.Sprintf(format, args...), true)
}

// slowHeads opens n requests whose head never ends: the head timeout
// (10 s) must cut each.
func (a *attack) slowHeads(n int) {
	for range n {
		c := rawConn(a.t, a.p.URL, "GET /records/victim HTTP/1.1\r\nHost: "+a.host+"\r\n")
		a.run(func() {
			if got, ok := closedWithin(c, 15*time.Second, "X: y\r\n"); !ok {
				a.fail("a head trickled for 15 s was not cut (%q)", got)
			}
		})
	}
}

// slowBodies opens n writes whose body trickles: BODY_TIMEOUT (2 s) must
// cut each, and nothing is written.
func (a *attack) slowBodies(n int) {
	for i := range n {
		c := rawConn(a.t, a.p.URL, fmt.Sprintf("PUT /records/slow%d HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[", i, a.host))
		a.run(func() {
			if got, ok := closedWithin(c, 8*time.Second, "1,"); !ok {
				a.fail("a body trickled for 8 s was not cut (BODY_TIMEOUT 2s) (%.100q)", got)
			}
		})
	}
}

// deafStreams opens n streams that never read, then publishes more than
// their buffers hold: the server must cut them.
func (a *attack) deafStreams(n int) {
	for range n {
		c := rawConn(a.t, a.p.URL, "GET /stream?event=big HTTP/1.1\r\nHost: "+a.host+"\r\nAccept: text/event-stream\r\n\r\n")
		c.(*net.TCPConn).SetReadBuffer(4096)
	}
	a.run(func() {
		payload := `"` + strings.Repeat("x", 60<<10) + `"`
		for range pick(100, 300) { // 6 MB and more: past every buffer
			if r := send(http.MethodPost, a.p.URL+"/events/big", payload); r.Status != http.StatusAccepted {
				a.fail("publish: %v", r)
				return
			}
		}
	})
}

// burst opens n streams at once and holds them; it returns their
// connections (for the caller to close) and counts those answered 200.
func (a *attack) burst(n int) ([]net.Conn, *atomic.Int64) {
	conns := make([]net.Conn, n)
	var opened atomic.Int64
	a.run(func() {
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", a.host)
				if err != nil {
					return
				}
				conns[i] = c
				io.WriteString(c, "GET /stream?event=burst HTTP/1.1\r\nHost: "+a.host+"\r\nAccept: text/event-stream\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil && strings.HasPrefix(line, "HTTP/1.1 200") {
					opened.Add(1)
				}
			}()
		}
		wg.Wait()
	})
	return conns, &opened
}

// badRequests sends n requests with a 2 MiB header (431) and n bodies of
// JSON nested 100,000 deep (400, or 413).
func (a *attack) badRequests(n int) {
	a.run(func() {
		for range n {
			if r := send(http.MethodGet, a.p.URL+"/records/victim", "", "X-Big", strings.Repeat("a", 2<<20)); r.Status != http.StatusRequestHeaderFieldsTooLarge {
				a.fail("a 2 MiB header: %v", r)
			}
			if r := send(http.MethodPut, a.p.URL+"/records/deep", strings.Repeat("[", 100000)+strings.Repeat("]", 100000)); r.Status != http.StatusBadRequest && r.Status != http.StatusRequestEntityTooLarge {
				a.fail("deep JSON: %v", r)
			}
		}
	})
}

// patchAmplification sends n JSON Patches of 200 copies of a 100 kB value
// (20 MB from a 10 kB patch): 413, nothing written.
func (a *attack) patchAmplification(n int) {
	a.run(func() {
		if r := send(http.MethodPut, a.p.URL+"/records/amp", `{"a":"`+strings.Repeat("x", 100<<10)+`"}`); r.Status/100 != 2 {
			a.fail("amp: %v", r)
			return
		}
		var ops []string
		for i := range 200 {
			ops = append(ops, fmt.Sprintf(`{"op":"copy","from":"/a","path":"/c%d"}`, i))
		}
		for range n {
			r := send(http.MethodPatch, a.p.URL+"/records/amp", "["+strings.Join(ops, ",")+"]", "Content-Type", "application/json-patch+json")
			if r.Status != http.StatusRequestEntityTooLarge {
				a.fail("a patch of 200 copies of 100 kB: %v, want 413", r)
			}
		}
	})
}

// oddResumeIDs opens streams with a 100 kB Last-Event-ID and with ids of
// no stream of this server: each a clear answer, never a 5xx.
func (a *attack) oddResumeIDs() {
	a.run(func() {
		for _, id := range []string{strings.Repeat("9", 100<<10), "abc", "nosuchstream-99999999999", "x-1", "-", "a-" + strings.Repeat("1", 30)} {
			s, err := testkit.Dial(a.p.URL+"/stream?record=victim", id)
			if err != nil {
				if strings.Contains(err.Error(), ": 5") {
					a.fail("Last-Event-ID %.40q: %v", id, err)
				}
				continue
			}
			if f, ok := s.TryNext(5 * time.Second); !ok || f.Event != "ready" {
				a.fail("Last-Event-ID %.40q: first frame %+v", id, f)
			}
			s.Close()
		}
	})
}

// check looks at what the attack left: the streams that never read were
// cut, and nothing refused was written.
func (a *attack) check(nDeaf int) {
	t := a.t
	t.Helper()
	if n := a.p.metric(t, "switchboard_slow_disconnects_total"); n < float64(nDeaf) {
		t.Errorf("switchboard_slow_disconnects_total = %v; want the %d streams that never read cut", n, nDeaf)
	}
	if r := send(http.MethodGet, a.p.URL+"/records/deep", ""); r.Status != http.StatusNotFound {
		t.Errorf("deep after the attack: %v", r)
	}
	if r := send(http.MethodGet, a.p.URL+"/records/amp", ""); !strings.Contains(string(r.Body), `"version":1`) {
		t.Errorf("amp after the attack: %v", r)
	}
	if r := send(http.MethodGet, a.p.URL+"/records/slow0", ""); r.Status != http.StatusNotFound {
		t.Errorf("a trickled body was written: %v", r)
	}
}
