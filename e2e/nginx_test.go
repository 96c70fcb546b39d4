package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// eventsourceVersion is the npm package `eventsource` that the test runs
// with node: a WHATWG EventSource for Node, which like a browser's gives
// up for good on a reconnect answered with anything but 200.
const eventsourceVersion = "eventsource@4.1.1"

// startNginx runs Debian's nginx in the foreground as a reverse proxy
// from 127.0.0.1:port to 127.0.0.1:backend, configured as the README
// says for streams (no buffering, long reads), and stops it when the test
// ends. It runs as whatever user the test runs as.
func startNginx(t *testing.T, port, backend int) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx" // Debian's, off a non-root PATH
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no nginx (%v): run `make deps`, which installs Debian's nginx", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	err = os.WriteFile(conf, fmt.Appendf(nil, `worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		location / {
			proxy_pass http://127.0.0.1:%[3]d;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_buffering off;
			proxy_read_timeout 1h;
		}
	}
}
`, dir, port, backend), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", "stderr", "-g", "daemon off;")
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // nginx's graceful stop
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("nginx exited at start: %v\n%s", err, log.String())
		default:
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen in 10s\n%s", log.String())
		}
	}
}

// nodeEventSource runs the npm package eventsource with node on url and
// returns every frame, open and error it sees, as it sees them. npm
// installs the package in a temporary directory: the test fails, rather
// than skips, when npm or node cannot.
type nodeEventSource struct {
	mu    sync.Mutex
	lines []nodeLine
}

// nodeLine is one thing the node client saw.
type nodeLine struct {
	Type       string `json:"type"` // a frame's event type, "open" or "error"
	ID         string `json:"id"`
	Data       string `json:"data"`
	Conn       int    `json:"conn"`
	ReadyState int    `json:"readyState"`
	Code       any    `json:"code"`
}

const nodeClient = `import { EventSource } from 'eventsource';
const es = new EventSource(process.argv[2]);
let opens = 0;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
es.onopen = () => { opens++; out({type: 'open', conn: opens}); };
es.onerror = (e) => out({type: 'error', readyState: es.readyState, code: e.code ?? null, conn: opens});
for (const type of ['ready', 'snapshot', 'record', 'delete', 'event', 'reset', 'denied']) {
	es.addEventListener(type, (e) => out({type, id: e.lastEventId, data: e.data, conn: opens}));
}
`

func startNodeEventSource(t *testing.T, url string) *nodeEventSource {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	npm := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error", eventsourceVersion)
	npm.Dir = dir
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s (the npm registry must be reachable): %v\n%s", eventsourceVersion, err, out)
	}
	script := filepath.Join(dir, "client.mjs")
	if err := os.WriteFile(script, []byte(nodeClient), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script, url)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.String() != "" {
			t.Logf("node's stderr: %s", stderr.String())
		}
	})
	n := &nodeEventSource{}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l nodeLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				n.mu.Lock()
				n.lines = append(n.lines, l)
				n.mu.Unlock()
			}
		}
	}()
	return n
}

// seen returns what the client has seen so far.
func (n *nodeEventSource) seen() []nodeLine {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.lines)
}

// wait polls until ok holds for what the client has seen.
func (n *nodeEventSource) wait(t *testing.T, what string, timeout time.Duration, ok func([]nodeLine) bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(n.seen()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node eventsource: %s: not within %v; it saw %+v", what, timeout, n.seen())
		}
	}
}

// nodeVersion is a predicate: a record frame of doc at version v arrived.
func nodeVersion(v int64) func([]nodeLine) bool {
	return func(ls []nodeLine) bool {
		return slices.ContainsFunc(ls, func(l nodeLine) bool {
			var r recordData
			return l.Type == "record" && json.Unmarshal([]byte(l.Data), &r) == nil && r.Name == "doc" && r.Version == v
		})
	}
}

// browserStream opens, from a page of the proxy's origin, an EventSource
// on the record doc, with the globals that waitBrowser and
// checkBrowserFrames read.
const browserStream = `(() => {
	window.frames = [];
	window.opens = 0;
	window.errors = 0;
	window.gaveUp = 0;
	const es = new EventSource('/stream?record=doc');
	window.es = es;
	es.onopen = () => { window.opens++; };
	es.onerror = () => { window.errors++; if (es.readyState === EventSource.CLOSED) window.gaveUp++; };
	for (const type of ['ready', 'snapshot', 'record', 'delete', 'event', 'presence', 'denied', 'reset']) {
		es.addEventListener(type, (e) => {
			window.frames.push({type: type, id: e.lastEventId, data: e.data, conn: window.opens});
		});
	}
	return true;
})()`

// TestNginxRestart restarts the single instance behind a real nginx, as
// a deploy of one machine does, while a browser (headless Chromium) and
// Node's eventsource follow a record through the proxy. The instance is
// down for about 2 s, longer than STREAM_RETRY (1 s): a client that came
// back after STREAM_RETRY would get nginx's 502 and give up for good.
// The drain's hint (3-5 s here) outlasts the restart: both clients
// reconnect once, to the new process, resume their stream, and see every
// version exactly once, the one written while they waited included.
func TestNginxRestart(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no headless Chromium at %s (%v): run `make test`, which installs Debian's chromium-headless-shell", chromiumPath, err)
	}
	bin := buildCommand(t)
	backend, port := testkit.FreePort(t), testkit.FreePort(t)
	env := []string{"HOST=127.0.0.1", "PORT=" + strconv.Itoa(backend), "AUTH_MODE=open", "DATA_DIR=" + t.TempDir(),
		"STREAM_RETRY=1s", "DRAIN_RETRY=3s", "DRAIN_RETRY_SPREAD=2s"}
	p := startProcess(t, bin, env...)
	startNginx(t, port, backend)
	proxy := fmt.Sprintf("http://127.0.0.1:%d", port)
	if st, _, body := do(t, http.MethodGet, proxy+"/healthz", "", ""); st != http.StatusOK {
		t.Fatalf("GET /healthz through nginx: %d %s", st, body)
	}

	node := startNodeEventSource(t, proxy+"/stream?record=doc")
	bctx := newBrowser(t, 90*time.Second)
	if err := chromedp.Do(bctx, chromedp.Navigate(proxy+"/healthz")); err != nil {
		t.Fatalf("navigate to %s/healthz: %v", proxy, err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](browserStream)); err != nil {
		t.Fatalf("open EventSource: %v", err)
	}
	snapshot := func(ls []nodeLine) bool {
		return slices.ContainsFunc(ls, func(l nodeLine) bool { return l.Type == "snapshot" })
	}
	node.wait(t, "the snapshot of doc", 30*time.Second, snapshot)
	waitBrowser(t, bctx, "the snapshot of doc", `window.frames.some(f => f.type === 'snapshot')`, 10*time.Second)

	put(t, proxy, "doc", `{"v":1}`)
	node.wait(t, "record version 1", 5*time.Second, nodeVersion(1))
	waitBrowser(t, bctx, "record version 1", recordVersion(1), 5*time.Second)

	// The restart: SIGTERM, the process exits 0, the proxy has no backend
	// (502) for 2 s, then the new process listens on the same port and
	// DATA_DIR.
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Errorf("the command's exit after SIGTERM: %v, want 0", err)
	}
	if st, _, _ := do(t, http.MethodGet, proxy+"/healthz", "", ""); st != http.StatusBadGateway {
		t.Errorf("GET /healthz through nginx with no backend: %d, want 502", st)
	}
	time.Sleep(time.Until(sigterm.Add(2 * time.Second)))
	p2 := startProcess(t, bin, env...)
	up := time.Since(sigterm)
	// Written while the clients wait out their hint: the resumption
	// replays it.
	put(t, proxy, "doc", `{"v":2}`)

	node.wait(t, "record version 2", 10*time.Second, nodeVersion(2))
	waitBrowser(t, bctx, "record version 2", recordVersion(2), 10*time.Second)
	back := time.Since(sigterm)
	put(t, p2.URL, "doc", `{"v":3}`)
	node.wait(t, "record version 3", 5*time.Second, nodeVersion(3))
	waitBrowser(t, bctx, "record version 3", recordVersion(3), 5*time.Second)
	t.Logf("the new process listened %v after SIGTERM; both clients had resumed %v after SIGTERM", up.Round(time.Millisecond), back.Round(time.Millisecond))

	// Leave time for a duplicate, a late snapshot or a further error to show.
	time.Sleep(500 * time.Millisecond)
	checkNodeLines(t, node.seen())
	state, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`[window.opens, window.errors, window.gaveUp, window.es.readyState]`))
	if err != nil {
		t.Fatalf("read the EventSource's state: %v", err)
	}
	if !slices.Equal(state, []int{2, 1, 0, 1}) {
		t.Errorf("browser: opens, errors, closed, readyState = %v, want [2 1 0 1]: one end (the drain), one reconnect, never given up", state)
	}
	frames, err := chromedp.Run(bctx, chromedp.Evaluate[[]browserFrame](`window.frames`))
	if err != nil {
		t.Fatalf("read window.frames: %v", err)
	}
	checkRestartFrames(t, "browser", frames)
}

// checkNodeLines checks what the node client saw: two opens, one error
// that was not final, and the frames of checkRestartFrames.
func checkNodeLines(t *testing.T, lines []nodeLine) {
	t.Helper()
	var frames []browserFrame
	opens, errs := 0, 0
	for _, l := range lines {
		switch l.Type {
		case "open":
			opens++
		case "error":
			errs++
			if l.ReadyState == 2 {
				t.Errorf("node eventsource gave up (readyState CLOSED, code %v)", l.Code)
			}
		default:
			frames = append(frames, browserFrame{Type: l.Type, ID: l.ID, Data: l.Data, Conn: l.Conn})
		}
	}
	if opens != 2 || errs != 1 {
		t.Errorf("node eventsource: %d opens and %d errors, want 2 and 1 (the drain's end, one reconnect)", opens, errs)
	}
	checkRestartFrames(t, "node eventsource", frames)
}

// checkRestartFrames checks frames across the restart: one snapshot, on
// the first connection; record versions exactly 1, 2, 3; one stream
// identity; frames on two connections.
func checkRestartFrames(t *testing.T, who string, frames []browserFrame) {
	t.Helper()
	var versions []int64
	var streams []string
	snapshots, conns := 0, 0
	for i, f := range frames {
		conns = max(conns, f.Conn)
		switch f.Type {
		case "ready":
			var r struct{ Stream string }
			json.Unmarshal([]byte(f.Data), &r)
			streams = append(streams, r.Stream)
		case "snapshot":
			snapshots++
			if f.Conn != 1 {
				t.Errorf("%s: frame %d: a snapshot on connection %d", who, i, f.Conn)
			}
		case "record":
			var r recordData
			json.Unmarshal([]byte(f.Data), &r)
			versions = append(versions, r.Version)
		default:
			t.Errorf("%s: frame %d: unexpected %s frame: %s", who, i, f.Type, f.Data)
		}
	}
	if !slices.Equal(versions, []int64{1, 2, 3}) {
		t.Errorf("%s: record versions %v, want [1 2 3]", who, versions)
	}
	if snapshots != 1 || conns != 2 || len(streams) != 2 || streams[0] != streams[1] {
		t.Errorf("%s: %d snapshots, %d connections, ready frames of streams %v; want 1 snapshot, 2 connections of one stream", who, snapshots, conns, streams)
	}
	if t.Failed() {
		t.Logf("%s saw: %+v", who, frames)
	}
}
