package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// pageServer serves an empty page: a second origin (another port) for
// the browser to run cross-origin scripts from.
func pageServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>app</title>")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// crossOriginScript opens an EventSource with withCredentials on the
// server at base and records its frames, opens and errors as
// collectFrames does.
func crossOriginScript(base string) string {
	return `(() => {
	window.frames = [];
	window.opens = 0;
	window.errors = 0;
	const es = new EventSource(` + strconv.Quote(base+"/stream?record=doc") + `, {withCredentials: true});
	window.es = es;
	es.onopen = () => { window.opens++; };
	es.onerror = () => { window.errors++; };
	for (const type of ['ready', 'snapshot', 'record', 'delete', 'reset']) {
		es.addEventListener(type, (e) => {
			window.frames.push({type: type, id: e.lastEventId, data: e.data, conn: window.opens});
		});
	}
	return true;
})()`
}

// TestBrowserCrossOrigin: in headless Chromium, a page of a listed origin
// (CORS_ORIGINS) logs in across origins with credentials: 'include' (a
// preflighted POST), keeps the sb_token cookie, and opens an EventSource
// with withCredentials that the cookie alone authorises: the snapshot and
// a change arrive. It writes with Authorization and If-Match (both
// preflighted) and reads the ETag the server exposes. A page of an origin
// not listed can do none of it: its login is blocked by the browser and
// its EventSource fails for good without a frame, although the browser
// sends the same cookie (same site, another port).
func TestBrowserCrossOrigin(t *testing.T) {
	app, evil := pageServer(t), pageServer(t)
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","clientData":{"name":"Alice"}}`))
	srv := startServer(t, loginEnv(hook.URL, "CORS_ORIGINS", app.URL))
	writer := signToken(t, "writer", time.Hour)
	if st, _, b := do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `{"v":1}`, "Authorization", "Bearer "+writer); st != http.StatusCreated {
		t.Fatalf("PUT doc: %d %s", st, b)
	}
	bctx := newBrowser(t, 40*time.Second)
	eval := func(what, script string, v any) {
		t.Helper()
		out, err := chromedp.Run(bctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%s: %s: %v", what, out, err)
		}
	}
	login := `fetch(` + strconv.Quote(srv.URL+"/auth/login?cookie=true") + `, {method: 'POST', credentials: 'include',
		headers: {'Content-Type': 'application/json'}, body: JSON.stringify({user: 'alice', password: 'pw'})})
		.then(async r => JSON.stringify({status: r.status, body: await r.text()}), e => JSON.stringify({status: 0, body: String(e)}))`
	type answer struct {
		Status int
		Body   string
		ETag   string
	}

	// The listed origin.
	if err := chromedp.Do(bctx, chromedp.Navigate(app.URL+"/")); err != nil {
		t.Fatalf("navigate to the app's page: %v", err)
	}
	var a answer
	eval("login from the app's page", login, &a)
	var la loginAnswer
	if a.Status != http.StatusOK || json.Unmarshal([]byte(a.Body), &la) != nil || la.ID != "alice" {
		t.Fatalf("login from the app's page: %+v", a)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](crossOriginScript(srv.URL))); err != nil {
		t.Fatalf("open the EventSource: %v", err)
	}
	waitBrowser(t, bctx, "the snapshot of doc", `window.frames.some(f => f.type === 'snapshot' && JSON.parse(f.data).version === 1)`, 10*time.Second)
	write := `fetch(` + strconv.Quote(srv.URL+"/records/doc") + `, {method: 'PUT', credentials: 'include',
		headers: {'Authorization': 'Bearer ` + la.Token + `', 'Content-Type': 'application/json', 'If-Match': '"1"'}, body: '{"v":2}'})
		.then(async r => JSON.stringify({status: r.status, body: await r.text(), etag: r.headers.get('ETag') || ''}), e => JSON.stringify({status: 0, body: String(e)}))`
	eval("a conditional write from the app's page", write, &a)
	if a.Status != http.StatusOK || a.ETag != `"2"` {
		t.Fatalf("PUT with If-Match from the app's page: %+v, want 200 with ETag \"2\" readable", a)
	}
	waitBrowser(t, bctx, "the change to version 2", recordVersion(2), 5*time.Second)
	var state struct{ Opens, Errors, ReadyState int }
	eval("the EventSource's state", `Promise.resolve(JSON.stringify({opens: window.opens, errors: window.errors, readyState: window.es.readyState}))`, &state)
	if state.Opens != 1 || state.Errors != 0 || state.ReadyState != 1 {
		t.Fatalf("the app's EventSource: %+v, want one open, no error, OPEN", state)
	}

	// An origin not listed, in the same browser: the cookie is there.
	if err := chromedp.Do(bctx, chromedp.Navigate(evil.URL+"/")); err != nil {
		t.Fatalf("navigate to the other page: %v", err)
	}
	eval("login from a page not listed", login, &a)
	if a.Status != 0 {
		t.Fatalf("login from a page of an origin not listed: %+v, want the browser to block it", a)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](crossOriginScript(srv.URL))); err != nil {
		t.Fatalf("open the EventSource: %v", err)
	}
	waitBrowser(t, bctx, "the EventSource of a page not listed to fail for good", `window.es.readyState === 2`, 10*time.Second)
	eval("the EventSource's state", `Promise.resolve(JSON.stringify({opens: window.opens, errors: window.errors, readyState: window.es.readyState, frames: window.frames.length}))`, &state)
	frames, err := chromedp.Run(bctx, chromedp.Evaluate[[]browserFrame](`window.frames`))
	if err != nil {
		t.Fatal(err)
	}
	if state.Opens != 0 || len(frames) != 0 {
		t.Fatalf("the EventSource of a page not listed: %+v, %d frames; want no open and no frame", state, len(frames))
	}
}
