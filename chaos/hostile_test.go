package chaos

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
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
// JSON Patch amplification (413, nothing written) and huge or foreign
// Last-Event-IDs (a clear answer, never a 5xx). The server's RSS and open
// files stay bounded and go back down. The well-behaved client's p99 is
// reported alone and during the attack (the attackers share the cores),
// then measured in windows alone and with the burst's streams held open,
// alternated so that the machine's noise falls on both alike: under
// CHAOS=long the median of the rounds' ratios must stay within 1.2.
func TestHostileClients(t *testing.T) {
	p := start(t, embEnv(t.TempDir(),
		"BODY_TIMEOUT", "2s", "MAX_BODY_BYTES", "262144", "MAX_RECORD_BYTES", "262144",
		"STREAM_BUFFER_BYTES", "1048576"))
	window := pick(5*time.Second, 10*time.Second)
	measure := func() time.Duration {
		stop := make(chan struct{})
		time.AfterFunc(window, func() { close(stop) })
		return p99(latencies(p.URL, stop))
	}
	measure() // warm up
	base := p.sample(t)
	baseline := measure()

	sampling := make(chan struct{})
	peak := peakRSS(p, sampling)
	a := &attack{t: t, p: p, host: strings.TrimPrefix(p.URL, "http://")}
	nSlow, nDeaf, nBurst := pick(50, 200), pick(10, 50), burstSize(t, pick(2000, 5000))
	a.slowHeads(nSlow)
	a.slowBodies(nSlow)
	a.deafStreams(nDeaf)
	burst, opened := a.burst(nBurst)
	a.badRequests(pick(20, 100))
	a.patchAmplification(pick(20, 100))
	a.oddResumeIDs()

	under := measure()
	a.wg.Wait()
	during := p.sample(t)
	closeAll(burst)
	after := settle(t, p, base)
	close(sampling)

	a.problems.Range(func(k, _ any) bool { t.Error(k); return true })
	if int(opened.Load()) != nBurst {
		t.Errorf("%d of %d streams of the burst opened", opened.Load(), nBurst)
	}
	a.check(nDeaf)
	if after.FDs > base.FDs+20 || after.Goroutines > base.Goroutines+20 {
		t.Errorf("before the attack: %s; at its end: %s; %v after the attackers left: %s", base, during, patience, after)
	}
	if peak.Load() > base.RSS+768<<20 {
		t.Errorf("RSS: %s before, peak %.0f MiB", base, float64(peak.Load())/(1<<20))
	}
	t.Logf("before: %s; at the attack's end: %s; peak RSS %.1f MiB; after: %s", base, during, float64(peak.Load())/(1<<20), after)
	t.Logf("attack: %d slow heads, %d slow bodies, %d streams that never read, %d stream connects in a burst", nSlow, nSlow, nDeaf, nBurst)
	t.Logf("the well-behaved client's p99: %v alone, %v during the attack (%+.0f%%)", baseline, under, pct(under, baseline))

	var alone, held []time.Duration
	var ratios []float64
	quiet := pick(time.Second, 3*time.Second)
	for range pick(1, 5) {
		alone = append(alone, measure())
		conns, opened := a.burst(nBurst)
		a.wg.Wait()
		if int(opened.Load()) != nBurst {
			t.Errorf("%d of %d streams of a burst opened", opened.Load(), nBurst)
		}
		time.Sleep(quiet) // the burst's own writes (its streams' records) and their checkpoint are done
		held = append(held, measure())
		closeAll(conns)
		settle(t, p, base)
		time.Sleep(quiet)
		ratios = append(ratios, float64(held[len(held)-1])/float64(alone[len(alone)-1]))
	}
	slices.Sort(ratios)
	r := ratios[len(ratios)/2]
	t.Logf("p99 in alternate windows of %v: alone %v, with %d streams held open %v; the median of the rounds' ratios %.2f", window, alone, nBurst, held, r)
	if long && r > 1.2 {
		t.Errorf("with %d streams held open the p99 is %.2f times the p99 alone (the median of %d rounds): more than 20%% over", nBurst, r, len(ratios))
	}
}

// settle waits up to patience for the server's open files and goroutines
// to come back to within 20 of base, and returns its last sample.
func settle(t *testing.T, p *proc, base usage) usage {
	after := base
	for end := time.Now().Add(patience); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if after = p.sample(t); after.FDs <= base.FDs+20 && after.Goroutines <= base.Goroutines+20 {
			break
		}
	}
	return after
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// pct is how much x is over base, in percent.
func pct(x, base time.Duration) float64 { return 100 * (float64(x)/float64(base) - 1) }

// peakRSS samples the process's RSS every 200 ms until stop and keeps the
// largest.
func peakRSS(p *proc, stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if u, err := p.trySample(); err == nil && u.RSS > peak.Load() {
				peak.Store(u.RSS)
			}
		}
	}()
	return &peak
}

// burstSize is n, or fewer where the limit of open files would refuse
// them: the server and this process each hold one descriptor per stream
// of the burst, beside the rest of the attack's.
func burstSize(t *testing.T, n int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= uint64(n+1500) {
		return n
	}
	fit := max(100, int(lim.Cur)-1500)
	t.Logf("a burst of %d streams, not %d: the limit of open files is %d", fit, n, lim.Cur)
	return fit
}
