package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium-headless-shell, which `make test` installs.
const chromiumPath = "/usr/bin/chromium-headless-shell"

// browserFrame is one SSE frame as a browser's EventSource delivered it:
// the event type, the EventSource's lastEventId at that moment, the data,
// and the number of the connection (1 for the first open) it came on.
type browserFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data string `json:"data"`
	Conn int    `json:"conn"`
}

// recordData is the part of snapshot and record frames the test checks.
type recordData struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// collectFrames opens one EventSource from the page (same origin as the
// server) and records every frame into window.frames, every open into
// window.opens and every error (a close, before the automatic reconnect)
// into window.errors.
const collectFrames = `(() => {
	window.frames = [];
	window.opens = 0;
	window.errors = 0;
	const es = new EventSource('/stream?record=doc&event=' + encodeURIComponent('chat/*'));
	window.es = es;
	es.onopen = () => { window.opens++; };
	es.onerror = () => { window.errors++; };
	for (const type of ['ready', 'snapshot', 'record', 'delete', 'event', 'presence', 'denied', 'reset']) {
		es.addEventListener(type, (e) => {
			window.frames.push({type: type, id: e.lastEventId, data: e.data, conn: window.opens});
		});
	}
	return true;
})()`

// TestBrowserEventSource checks the stream against a real browser's
// EventSource: snapshot, changes and events arrive, and after the server
// ends the stream (STREAM_MAX_LIFETIME) the browser's automatic reconnect
// with Last-Event-ID resumes it: the change made in between arrives once,
// nothing is repeated and no second snapshot is sent.
func TestBrowserEventSource(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no headless Chromium at %s (%v): run `make test`, which installs Debian's chromium-headless-shell", chromiumPath, err)
	}
	srv := startServer(t, map[string]string{"STREAM_MAX_LIFETIME": "3s", "STREAM_RETRY": "200ms"})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	// The page must be same-origin with /stream: use one of the server's own pages.
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatalf("navigate to %s/healthz: %v", srv.URL, err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](collectFrames)); err != nil {
		t.Fatalf("open EventSource: %v", err)
	}

	waitBrowser(t, bctx, "the snapshot of doc", `window.frames.some(f => f.type === 'snapshot' && JSON.parse(f.data).name === 'doc')`, 5*time.Second)

	if code, _, body := do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `{"v":1}`); code/100 != 2 {
		t.Fatalf("PUT /records/doc v1: %d %s", code, body)
	}
	waitBrowser(t, bctx, "record version 1", recordVersion(1), 5*time.Second)

	if code, _, body := do(t, http.MethodPost, srv.URL+"/events/chat/lobby", "application/json", `{"msg":"hi"}`); code != http.StatusAccepted {
		t.Fatalf("POST /events/chat/lobby: %d %s", code, body)
	}
	waitBrowser(t, bctx, "the chat/lobby event", `window.frames.some(f => f.type === 'event' && JSON.parse(f.data).name === 'chat/lobby')`, 5*time.Second)

	// The server ends the stream after 2.7-3 s; the browser comes back 200 ms later.
	waitBrowser(t, bctx, "the server to close the stream", `window.errors >= 1 || window.opens >= 2`, 6*time.Second)
	if code, _, body := do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `{"v":2}`); code/100 != 2 {
		t.Fatalf("PUT /records/doc v2: %d %s", code, body)
	}
	state, err := chromedp.Run(bctx, chromedp.Evaluate[string](`'readyState=' + window.es.readyState + ' opens=' + window.opens`))
	if err != nil {
		t.Fatalf("read EventSource state: %v", err)
	}
	t.Logf("v2 written with the browser at %s", state)
	waitBrowser(t, bctx, "the reconnect", `window.opens >= 2`, 3*time.Second)
	waitBrowser(t, bctx, "record version 2", recordVersion(2), 3*time.Second)

	// Leave time for a duplicate or a late snapshot to show up.
	if err := chromedp.Do(bctx, chromedp.Sleep(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	frames, err := chromedp.Run(bctx, chromedp.Evaluate[[]browserFrame](`window.frames`))
	if err != nil {
		t.Fatalf("read window.frames: %v", err)
	}
	checkBrowserFrames(t, frames)
}

// recordVersion is a predicate: a record frame of doc at version v arrived.
func recordVersion(v int) string {
	return fmt.Sprintf(`window.frames.some(f => f.type === 'record' && JSON.parse(f.data).name === 'doc' && JSON.parse(f.data).version === %d)`, v)
}

// waitBrowser polls predicate in the page until it is true, failing the
// test with every frame received so far when it is not within timeout.
func waitBrowser(t *testing.T, ctx context.Context, what, predicate string, timeout time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err == nil {
		return
	}
	dump, derr := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({opens: window.opens, errors: window.errors, readyState: window.es && window.es.readyState, frames: window.frames})`))
	if derr != nil {
		dump = "(unreadable: " + derr.Error() + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("not within %v: %w", timeout, err)
	}
	t.Fatalf("wait for %s: %v\nbrowser: %s", what, err, dump)
}

// checkBrowserFrames checks the whole sequence the browser saw across its
// connections: one snapshot, record versions exactly [1, 2], one event,
// an id on every record and event frame, no reset, and one stream identity.
func checkBrowserFrames(t *testing.T, frames []browserFrame) {
	t.Helper()
	var (
		versions  []int64
		snapshots int
		events    int
		streams   []string
		ids       = map[string]int{}
		conns     int
	)
	for i, f := range frames {
		conns = max(conns, f.Conn)
		switch f.Type {
		case "ready":
			var r struct {
				Stream string `json:"stream"`
			}
			if err := json.Unmarshal([]byte(f.Data), &r); err != nil {
				t.Errorf("frame %d: ready data %q: %v", i, f.Data, err)
			}
			streams = append(streams, r.Stream)
		case "snapshot":
			snapshots++
			if f.Conn != 1 {
				t.Errorf("frame %d: snapshot on connection %d (a resumed stream sends none): %s", i, f.Conn, f.Data)
			}
		case "record", "event":
			if f.ID == "" {
				t.Errorf("frame %d: %s frame without an id: %s", i, f.Type, f.Data)
			} else if j, dup := ids[f.ID]; dup {
				t.Errorf("frame %d: %s frame has the id %q of frame %d", i, f.Type, f.ID, j)
			}
			ids[f.ID] = i
			if f.Type == "event" {
				events++
				continue
			}
			var r recordData
			if err := json.Unmarshal([]byte(f.Data), &r); err != nil {
				t.Errorf("frame %d: record data %q: %v", i, f.Data, err)
			}
			versions = append(versions, r.Version)
		case "reset", "denied", "delete":
			t.Errorf("frame %d: unexpected %s frame: %s", i, f.Type, f.Data)
		}
	}
	if !slices.Equal(versions, []int64{1, 2}) {
		t.Errorf("record versions %v, want [1 2]", versions)
	}
	if snapshots != 1 {
		t.Errorf("%d snapshot frames, want 1", snapshots)
	}
	if events != 1 {
		t.Errorf("%d event frames, want 1", events)
	}
	if conns < 2 {
		t.Errorf("frames came on %d connection(s), want a reconnect", conns)
	}
	for _, s := range streams {
		if s != streams[0] {
			t.Errorf("ready frames name streams %v, want one identity across reconnects", streams)
			break
		}
	}
	if t.Failed() {
		var b strings.Builder
		for i, f := range frames {
			fmt.Fprintf(&b, "\n  %2d conn=%d %-8s id=%q %s", i, f.Conn, f.Type, f.ID, f.Data)
		}
		t.Logf("frames seen by the browser:%s", b.String())
	}
}
