package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildCommand builds the command at the repository's root into a
// temporary directory and returns its path.
func buildCommand(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is the command running as an operator runs it.
type process struct {
	cmd    *exec.Cmd
	URL    string
	log    lockedBuffer // stdout and stderr
	exited chan error   // the exit status, once
}

// startProcess runs bin with env (and nothing else of the test's
// environment) and waits until it listens.
func startProcess(t *testing.T, bin string, env ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin), exited: make(chan error, 1)}
	p.cmd.Env = env
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		p.exited <- err
	}()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	select {
	case p.URL = <-listening(io.TeeReader(pr, &p.log)):
	case err := <-p.exited:
		t.Fatalf("the command exited at start: %v\n%s", err, p.log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("the command did not start in 10s\n%s", p.log.String())
	}
	waitHealthy(t, p.URL)
	return p
}

// wait waits for the process to exit, at most timeout, and returns its
// exit status.
func (p *process) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		return err
	case <-time.After(timeout):
		t.Fatalf("the command did not exit within %v\n%s", timeout, p.log.String())
		return nil
	}
}

// hintEvent is one SSE event with every field, retry: included.
type hintEvent struct {
	ID, Event, Data string
	Retry           int64 // -1: no retry: field
}

// hintStream reads a stream event by event, retry: lines included, which
// the other clients of the tests skip.
type hintStream struct {
	resp *http.Response
	rd   *bufio.Reader
}

func dialHint(ctx context.Context, url, lastID string) (*hintStream, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return &hintStream{resp: resp, rd: bufio.NewReader(resp.Body)}, nil
}

// next returns the next event (comments skipped), or io.EOF at the end of
// the stream.
func (s *hintStream) next() (hintEvent, error) {
	e, fields := hintEvent{Retry: -1}, 0
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			if err == io.EOF && fields > 0 {
				return e, nil // a field without its blank line, then the end
			}
			return e, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if fields > 0 {
				return e, nil
			}
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "":
			continue // a comment
		case "id":
			e.ID = value
		case "event":
			e.Event = value
		case "data":
			e.Data = value
		case "retry":
			e.Retry, _ = strconv.ParseInt(value, 10, 64)
		}
		fields++
	}
}

func (s *hintStream) Close() { s.resp.Body.Close() }

// drainClient is one stream of TestDrainSIGTERM, from its first
// connection to its resumption on the restarted server.
type drainClient struct {
	record  string
	stream  string    // the ready frame's stream id
	lastID  string    // the last id received
	version int64     // the last version of record received
	hint    int64     // the last retry: before the end (ms); -1: none after ready
	ended   time.Time // when the first connection ended
	err     error
}

// TestDrainSIGTERM runs the command with 200 open streams and writers
// racing, and sends it SIGTERM: every stream ends within SHUTDOWN_TIMEOUT
// with a retry: hint between DRAIN_RETRY and DRAIN_RETRY+DRAIN_RETRY_SPREAD
// (the defaults: 3-8 s), the hints spread over that window (not all in
// one second), the command exits 0, every write acknowledged (even after
// SIGTERM) is there after a restart on the same DATA_DIR, and every
// client that comes back after its hint resumes its stream there, missing
// no change.
func TestDrainSIGTERM(t *testing.T) {
	const streams, writers = 200, 4
	bin := buildCommand(t)
	dir := t.TempDir()
	env := []string{"HOST=127.0.0.1", "PORT=0", "AUTH_MODE=open", "DATA_DIR=" + dir, "SHUTDOWN_TIMEOUT=10s"}
	p := startProcess(t, bin, env...)

	// The streams, each on one of the writers' records.
	clients := make([]*drainClient, streams)
	opened := make(chan int, streams)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range clients {
		c := &drainClient{record: fmt.Sprintf("k%d", i%writers), hint: -1}
		clients[i] = c
		wg.Go(func() {
			c.err = c.first(ctx, p.URL+"/stream?record="+c.record, opened, i)
		})
	}
	for range streams {
		select {
		case <-opened:
		case <-time.After(20 * time.Second):
			t.Fatalf("the %d streams did not all open in 20s", streams)
		}
	}

	// The writers: each writes its record until the server refuses,
	// keeping the last version acknowledged.
	acked := make([]int64, writers)
	var writing sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			for n := 1; ; n++ {
				req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/records/k%d", p.URL, w), strings.NewReader(fmt.Sprintf(`{"n":%d}`, n)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				var rec struct{ Version int64 }
				json.NewDecoder(resp.Body).Decode(&rec)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					return
				}
				acked[w] = rec.Version
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("the command's exit after SIGTERM: %v, want 0\n%s", err, p.log.String())
	}
	exited := time.Since(sigterm)
	writing.Wait()
	wg.Wait()
	if _, after, _ := strings.Cut(p.log.String(), `"msg":"shutting down"`); strings.Contains(after, `"level":"WARN"`) || strings.Contains(after, `"level":"ERROR"`) {
		t.Errorf("the drain logged a warning or an error:%s", after)
	}

	// The restart, at once, on the same DATA_DIR.
	p2 := startProcess(t, bin, env...)
	restarted := time.Since(sigterm)
	for w, v := range acked {
		st, _, body := do(t, http.MethodGet, fmt.Sprintf("%s/records/k%d", p2.URL, w), "", "")
		var rec struct {
			Version int64
			Data    struct{ N int64 }
		}
		json.Unmarshal(body, &rec)
		// A write under way at the end may have committed unacknowledged.
		if st != http.StatusOK || rec.Version < v || (rec.Version == v && rec.Data.N != v) {
			t.Errorf("k%d after the restart: %d %s, want version %d (acknowledged) or later", w, st, body, v)
		}
	}

	var hints []int64
	perSecond := map[int64]int{}
	var lastEnd time.Duration
	for i, c := range clients {
		switch {
		case c.err != nil:
			t.Errorf("stream %d: %v", i, c.err)
			continue
		case c.hint < 3000 || c.hint > 8000:
			t.Errorf("stream %d ended with the retry hint %d ms, want 3000-8000", i, c.hint)
			continue
		}
		hints = append(hints, c.hint)
		perSecond[c.hint/1000]++
		lastEnd = max(lastEnd, c.ended.Sub(sigterm))
	}
	if lastEnd > 10*time.Second {
		t.Errorf("the last stream ended %v after SIGTERM, past SHUTDOWN_TIMEOUT", lastEnd)
	}
	if len(hints) == streams {
		lo, hi, mean, sd := spread(hints)
		t.Logf("SIGTERM: the last stream ended after %v, the command exited after %v, restarted after %v", lastEnd.Round(time.Millisecond), exited.Round(time.Millisecond), restarted.Round(time.Millisecond))
		t.Logf("retry hints of %d streams: %d-%d ms, mean %.0f ms, sd %.0f ms (uniform over 3-8 s: sd 1443); per second: %v", streams, lo, hi, mean, sd, perSecond)
		if hi-lo < 3000 {
			t.Errorf("the hints span %d ms, want them spread over most of the 5 s window", hi-lo)
		}
		for s, n := range perSecond {
			if n > streams/3 {
				t.Errorf("%d of %d streams come back in second %d: not spread", n, streams, s)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every client comes back after its hint, as a browser does, and
	// resumes: same stream, and every version of its record up to the
	// last (which the writers' final writes may have moved).
	final := make([]int64, writers)
	for w := range final {
		_, _, body := do(t, http.MethodGet, fmt.Sprintf("%s/records/k%d", p2.URL, w), "", "")
		var rec struct{ Version int64 }
		json.Unmarshal(body, &rec)
		final[w] = rec.Version
	}
	back := make([]time.Duration, streams)
	for i, c := range clients {
		wg.Go(func() {
			time.Sleep(time.Until(c.ended.Add(time.Duration(c.hint) * time.Millisecond)))
			back[i] = time.Since(sigterm)
			c.err = c.resume(ctx, p2.URL+"/stream?record="+c.record, final[i%writers])
		})
	}
	wg.Wait()
	for i, c := range clients {
		if c.err != nil {
			t.Errorf("stream %d on the restarted server: %v", i, c.err)
		}
	}
	slices.Sort(back)
	t.Logf("reconnects after SIGTERM: first %v, median %v, last %v", back[0].Round(time.Millisecond), back[streams/2].Round(time.Millisecond), back[streams-1].Round(time.Millisecond))
	t.Logf("first server's log (tail): %s", tail(p.log.String(), 3))
}

// first reads a stream's first connection to its end, keeping its last
// id, the last version of its record, and its last retry hint; it sends i
// on opened once the stream is ready.
func (c *drainClient) first(ctx context.Context, url string, opened chan<- int, i int) error {
	s, err := dialHint(ctx, url, "")
	if err != nil {
		opened <- i
		return err
	}
	defer s.Close()
	for {
		e, err := s.next()
		if err != nil {
			c.ended = time.Now()
			if err == io.EOF {
				err = nil
			}
			if c.stream == "" {
				opened <- i
				return fmt.Errorf("ended before ready: %v", err)
			}
			return err
		}
		if err := c.take(e); err != nil {
			return err
		}
		if e.Event == "ready" {
			c.hint = -1 // the retry: before ready is the normal one
			opened <- i
		}
	}
}

// take notes what an event says about the stream.
func (c *drainClient) take(e hintEvent) error {
	if e.Retry >= 0 {
		c.hint = e.Retry
	}
	if e.ID != "" {
		c.lastID = e.ID
	}
	switch e.Event {
	case "ready":
		var r struct{ Stream string }
		json.Unmarshal([]byte(e.Data), &r)
		if c.stream != "" && r.Stream != c.stream {
			return fmt.Errorf("resumed as stream %q, not %q", r.Stream, c.stream)
		}
		c.stream = r.Stream
	case "snapshot", "record":
		var r recordData
		json.Unmarshal([]byte(e.Data), &r)
		if e.Event == "record" && r.Version != c.version+1 {
			return fmt.Errorf("version %d after %d", r.Version, c.version)
		}
		if e.Event == "snapshot" && c.stream != "" && c.version > 0 {
			return fmt.Errorf("a snapshot on resumption (version %d)", r.Version)
		}
		c.version = r.Version
	case "reset":
		return fmt.Errorf("reset: %s", e.Data)
	}
	return nil
}

// resume reconnects with the last id and reads until the record's final
// version.
func (c *drainClient) resume(ctx context.Context, url string, final int64) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := dialHint(ctx, url, c.lastID)
	if err != nil {
		return err
	}
	defer s.Close()
	for c.version < final {
		e, err := s.next()
		if err != nil {
			return fmt.Errorf("at version %d of %d: %v", c.version, final, err)
		}
		if err := c.take(e); err != nil {
			return err
		}
	}
	return nil
}

// spread returns the least, the greatest, the mean and the standard
// deviation of xs.
func spread(xs []int64) (lo, hi int64, mean, sd float64) {
	lo, hi = slices.Min(xs), slices.Max(xs)
	for _, x := range xs {
		mean += float64(x)
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		sd += (float64(x) - mean) * (float64(x) - mean)
	}
	return lo, hi, mean, math.Sqrt(sd / float64(len(xs)))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestDrainShutdownTimeout: while calls wait for their answers the
// draining server keeps listening: /readyz answers 503, a stream 503 with
// Retry-After, a write is served, and a call whose provider answers gets
// its answer. A call whose provider never answers (with an
// RPC_ACK_TIMEOUT longer than the drain) is cut at SHUTDOWN_TIMEOUT, and
// the server still returns nil (the command exits 0) within it.
func TestDrainShutdownTimeout(t *testing.T) {
	srv := startServer(t, map[string]string{"SHUTDOWN_TIMEOUT": "2s", "RPC_ACK_TIMEOUT": "1m"})
	call := func(name string) <-chan string { // the status and body, or the error
		res := make(chan string, 1)
		go func() {
			resp, err := http.Post(srv.URL+"/rpc/"+name+"?timeout=60s", "application/json", strings.NewReader(`{}`))
			if err != nil {
				res <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			res <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}()
		return res
	}
	// The providers poll first: a call with no provider at all is refused.
	polled := make(chan rpcRequest, 2)
	for _, name := range []string{"answered", "stuck"} {
		registerProvider(t, srv.URL, name, name)
		go func() { polled <- rpcPollOne(t, srv.URL, "name="+name+"&provider="+name) }()
	}
	waitSample(t, srv.URL, "switchboard_rpc_polls_waiting", 2)
	answeredCall, stuckCall := call("answered"), call("stuck")
	var answered rpcRequest // the other is taken, never answered
	for range 2 {
		if r := <-polled; r.Name == "answered" {
			answered = r
		}
	}

	stopped := make(chan time.Duration, 1)
	start := time.Now()
	go func() { srv.Stop(t); stopped <- time.Since(start) }()
	// The server still listens while calls wait: it is not ready (once the
	// drain is under way), refuses streams, serves writes, and takes the
	// answer.
	waitReadyz(t, srv.URL, http.StatusServiceUnavailable, 10*time.Second)
	if st, h, body := do(t, http.MethodGet, srv.URL+"/stream?record=doc", "", ""); st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("GET /stream while draining: %d (Retry-After %q) %s, want 503 with Retry-After", st, h.Get("Retry-After"), body)
	}
	put(t, srv.URL, "doc", `{"during":"the drain"}`)
	mustAnswer(t, srv.URL, answered.ID, `{"data":"done"}`)
	if r := <-answeredCall; r != `200 {"data":"done"}` {
		t.Errorf("the call answered during the drain: %s, want 200 with the answer", r)
	}
	select {
	case took := <-stopped:
		if took > 2500*time.Millisecond {
			t.Errorf("the server stopped %v after its context ended, past SHUTDOWN_TIMEOUT (2s)", took)
		}
		t.Logf("stopped after %v", took.Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop in 10s")
	}
	if r := <-stuckCall; strings.HasPrefix(r, "200") {
		t.Errorf("the call never answered: %s, want it cut", r)
	}
	if !strings.Contains(srv.Log(), "requests still under way at SHUTDOWN_TIMEOUT were cut") {
		t.Errorf("the log does not say that a request was cut:\n%s", tail(srv.Log(), 5))
	}
}

// TestDrainIdleServerListens: a server with nothing under way, told to
// stop, still listens for a while: /readyz answers 503 and a new stream
// 503 UNAVAILABLE with Retry-After, rather than a refused connection;
// then it stops within SHUTDOWN_TIMEOUT.
func TestDrainIdleServerListens(t *testing.T) {
	srv := startServer(t, map[string]string{"SHUTDOWN_TIMEOUT": "10s"}) // it listens 1 s at least
	stopped := make(chan time.Duration, 1)
	start := time.Now()
	go func() { srv.Stop(t); stopped <- time.Since(start) }()
	var waited time.Duration
	t.Cleanup(func() { // before startServer's: one Stop at a time
		if waited == 0 {
			<-stopped
		}
	})
	waitReadyz(t, srv.URL, http.StatusServiceUnavailable, 5*time.Second)
	st, h, body := do(t, http.MethodGet, srv.URL+"/stream?record=doc", "", "")
	if st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(string(body), `"UNAVAILABLE"`) {
		t.Errorf("GET /stream while draining: %d (Retry-After %q) %s, want 503 UNAVAILABLE with Retry-After", st, h.Get("Retry-After"), body)
	}
	if waited = <-stopped; waited > 10*time.Second {
		t.Errorf("the server stopped %v after it was told to, past its SHUTDOWN_TIMEOUT of 10s", waited)
	}
}
