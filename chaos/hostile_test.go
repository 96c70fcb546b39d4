package chaos

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latencies measures a well-behaved client: a PUT then a GET of its own
// record, one after the other, until stop; it returns every request's
// duration.
func latencies(base string, stop <-chan struct{}) []time.Duration {
	c := &http.Client{Timeout: 10 * time.Second}
	var out []time.Duration
	for i := 0; ; i++ {
		select {
		case <-stop:
			return out
		default:
		}
		for _, req := range []func() (*http.Response, error){
			func() (*http.Response, error) {
				r, _ := http.NewRequest(http.MethodPut, base+"/records/victim", strings.NewReader(fmt.Sprintf(`{"i":%d}`, i)))
				r.Header.Set("Content-Type", "application/json")
				return c.Do(r)
			},
			func() (*http.Response, error) { return c.Get(base + "/records/victim") },
		} {
			began := time.Now()
			resp, err := req()
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			d := time.Since(began)
			if err != nil || resp.StatusCode/100 != 2 {
				d = 10 * time.Second // a failure counts as the worst
			}
			out = append(out, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// p99 returns the 99th percentile of ds.
func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// rawConn dials the server and sends head; the caller sends the rest.
func rawConn(t *testing.T, base, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedWithin reports whether the server closed (or answered and closed)
// c within d, while the client trickles a byte every 500 ms.
func closedWithin(c net.Conn, d time.Duration, trickle string) (string, bool) {
	end := time.Now().Add(d)
	var got []byte
	buf := make([]byte, 4096)
	for time.Now().Before(end) {
		if trickle != "" {
			if _, err := io.WriteString(c, trickle); err != nil {
				return string(got), true
			}
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !isTimeout(err) {
			return string(got), true
		}
	}
	return string(got), false
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestHostileClients runs a well-behaved client alone, then while hostile
// ones attack the same server together: slowloris on headers (cut after
// the 10 s head timeout) and on bodies (cut after BODY_TIMEOUT, nothing
// written), streams that never read (cut past their buffer), a burst of
// stream connects, oversized headers (431), deeply nested JSON (400),
// JSON Patch amplification (refused, nothing written) and huge or
// foreign Last-Event-IDs (a clear answer, never a 5xx). The server's
// RSS and open files stay bounded and go back down; the well-behaved
// client's p99 is reported (and, under CHAOS=long, must stay within 20%
// of its baseline).
func TestHostileClients(t *testing.T) {
	p := start(t, embEnv(t.TempDir(),
		"BODY_TIMEOUT", "2s", "MAX_BODY_BYTES", "262144", "MAX_RECORD_BYTES", "262144",
		"STREAM_BUFFER_BYTES", "1048576"))
	window := pick(5*time.Second, 30*time.Second)
	measure := func() []time.Duration {
		stop := make(chan struct{})
		time.AfterFunc(window, func() { close(stop) })
		return latencies(p.URL, stop)
	}
	measure() // warm up
	base := p.sample(t)
	baseline := measure()

	var wg sync.WaitGroup
	var problems sync.Map
	fail := func(what string, args ...any) { problems.Store(fmt.Sprintf(what, args...), true) }
	var peak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		for {
			select {
			case <-sampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			u, err := p.trySample()
			if err == nil && u.RSS > peak.Load() {
				peak.Store(u.RSS)
			}
		}
	}()
	attack := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	host := strings.TrimPrefix(p.URL, "http://")
	nSlow := pick(50, 200)

	// Slowloris on headers: a head that never ends.
	heads := make([]net.Conn, nSlow)
	for i := range heads {
		heads[i] = rawConn(t, p.URL, "GET /records/victim HTTP/1.1\r\nHost: "+host+"\r\n")
	}
	for _, c := range heads {
		attack(func() {
			if got, ok := closedWithin(c, 15*time.Second, "X: y\r\n"); !ok {
				fail("a head trickled for 15 s was not cut (%q)", got)
			}
		})
	}
	// Slowloris on bodies.
	bodies := make([]net.Conn, nSlow)
	for i := range bodies {
		bodies[i] = rawConn(t, p.URL, fmt.Sprintf("PUT /records/slow%d HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[", i, host))
	}
	for _, c := range bodies {
		attack(func() {
			if got, ok := closedWithin(c, 8*time.Second, "1,"); !ok {
				fail("a body trickled for 8 s was not cut (BODY_TIMEOUT 2s) (%.100q)", got)
			}
		})
	}
	// Streams that never read.
	nDeaf := pick(10, 50)
	for range nDeaf {
		c := rawConn(t, p.URL, "GET /stream?event=big HTTP/1.1\r\nHost: "+host+"\r\nAccept: text/event-stream\r\n\r\n")
		c.(*net.TCPConn).SetReadBuffer(4096)
	}
	attack(func() {
		payload := `"` + strings.Repeat("x", 60<<10) + `"`
		for range pick(100, 300) { // 6 MB and more: past every buffer
			if a := send(http.MethodPost, p.URL+"/events/big", payload); a.Status != http.StatusAccepted {
				fail("publish: %v", a)
				return
			}
		}
	})
	// A burst of stream connects, held open, then closed.
	nBurst := pick(2000, 5000)
	burst := make([]net.Conn, nBurst)
	var opened atomic.Int64
	attack(func() {
		var bw sync.WaitGroup
		for i := range burst {
			bw.Add(1)
			go func() {
				defer bw.Done()
				c, err := net.Dial("tcp", host)
				if err != nil {
					return
				}
				burst[i] = c
				io.WriteString(c, "GET /stream?event=burst HTTP/1.1\r\nHost: "+host+"\r\nAccept: text/event-stream\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil && strings.HasPrefix(line, "HTTP/1.1 200") {
					opened.Add(1)
				}
			}()
		}
		bw.Wait()
	})
	// Oversized headers, deep JSON, patch amplification, odd resume ids.
	attack(func() {
		for range pick(20, 100) {
			if a := send(http.MethodGet, p.URL+"/records/victim", "", "X-Big", strings.Repeat("a", 2<<20)); a.Status != http.StatusRequestHeaderFieldsTooLarge {
				fail("a 2 MiB header: %v", a)
			}
			if a := send(http.MethodPut, p.URL+"/records/deep", strings.Repeat("[", 100000)+strings.Repeat("]", 100000)); a.Status != http.StatusBadRequest && a.Status != http.StatusRequestEntityTooLarge {
				fail("deep JSON: %v", a)
			}
		}
	})
	attack(func() {
		if a := send(http.MethodPut, p.URL+"/records/amp", `{"a":"`+strings.Repeat("x", 100<<10)+`"}`); a.Status/100 != 2 {
			fail("amp: %v", a)
			return
		}
		var ops []string
		for i := range 200 {
			ops = append(ops, fmt.Sprintf(`{"op":"copy","from":"/a","path":"/c%d"}`, i))
		}
		for range pick(20, 100) {
			a := send(http.MethodPatch, p.URL+"/records/amp", "["+strings.Join(ops, ",")+"]", "Content-Type", "application/json-patch+json")
			if a.Status != http.StatusRequestEntityTooLarge {
				fail("a patch of 200 copies of 100 kB: %v, want 413", a)
			}
		}
	})
	attack(func() {
		for _, id := range []string{strings.Repeat("9", 100<<10), "abc", "nosuchstream-99999999999", "x-1", "-", "a-" + strings.Repeat("1", 30)} {
			s, err := dial(p.URL+"/stream?record=victim", id)
			if err != nil {
				if strings.Contains(err.Error(), ": 5") {
					fail("Last-Event-ID %.40q: %v", id, err)
				}
				continue
			}
			if f, ok := s.next(5 * time.Second); !ok || f.Event != "ready" {
				fail("Last-Event-ID %.40q: first frame %+v", id, f)
			}
			s.close()
		}
	})

	under := measure()
	wg.Wait()
	// The burst's streams are still open.
	held := measure()
	during := p.sample(t)
	// The attackers leave.
	for _, c := range burst {
		if c != nil {
			c.Close()
		}
	}
	after := base
	for end := time.Now().Add(patience); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if after = p.sample(t); after.FDs <= base.FDs+20 {
			break
		}
	}
	close(sampling)

	problems.Range(func(k, _ any) bool { t.Error(k); return true })
	if int(opened.Load()) != nBurst {
		t.Errorf("%d of %d streams of the burst opened", opened.Load(), nBurst)
	}
	if n := p.metric(t, "switchboard_slow_disconnects_total"); n < float64(nDeaf) {
		t.Errorf("switchboard_slow_disconnects_total = %v; want the %d streams that never read cut", n, nDeaf)
	}
	for _, name := range []string{"amp", "deep"} {
		a := send(http.MethodGet, p.URL+"/records/"+name, "")
		if name == "deep" && a.Status != http.StatusNotFound || name == "amp" && !strings.Contains(string(a.Body), `"version":1`) {
			t.Errorf("%s after the attack: %v", name, a)
		}
	}
	if a := send(http.MethodGet, p.URL+"/records/slow0", ""); a.Status != http.StatusNotFound {
		t.Errorf("a trickled body was written: %v", a)
	}
	if after.FDs > base.FDs+20 {
		t.Errorf("open files: %d before the attack, %d at its end, still %d once the attackers left", base.FDs, during.FDs, after.FDs)
	}
	if peak.Load() > base.RSS+768<<20 {
		t.Errorf("RSS: %s before, peak %.0f MiB", base, float64(peak.Load())/(1<<20))
	}
	b, u, h := p99(baseline), p99(under), p99(held)
	t.Logf("before: %s; with the burst's streams open: %s; peak RSS %.1f MiB; after: %s", base, during, float64(peak.Load())/(1<<20), after)
	t.Logf("attack: %d slow heads, %d slow bodies, %d streams that never read, %d stream connects in a burst; the well-behaved client's p99: %v alone (%d requests), %v during the attack (%d requests, %+.0f%%; the attackers share the cores), %v with the attack's %d streams held open (%d requests, %+.0f%%)",
		nSlow, nSlow, nDeaf, nBurst, b, len(baseline), u, len(under), 100*(float64(u)/float64(b)-1), h, nBurst, len(held), 100*(float64(h)/float64(b)-1))
	if long && h > b*12/10 {
		t.Errorf("p99 with the attack's streams held open %v, more than 20%% over its baseline %v", h, b)
	}
}
