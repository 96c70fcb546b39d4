package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// timingPage is a page that, as it loads, imports /client.js, opens a
// client in cookie mode, logs in and subscribes to a record, noting in
// window.timing the milliseconds since the navigation started
// (performance.now()) at each step.
const timingPage = `<!doctype html>
<title>timing</title>
<script type="module">
const start = performance.now();
const {switchboard} = await import('/client.js');
const loaded = performance.now();
const sb = await switchboard(location.origin, {cookie: true});
await sb.login({user: 'alice', password: 'pw'});
const login = performance.now();
sb.record('doc').subscribe(() => {
  window.timing = window.timing || {start, loaded, login, snapshot: performance.now()};
});
</script>
`

// TestClientJSFirstSnapshotTime measures, in the browser, the time from
// opening a page to being logged in (through a real webhook) and having
// the first snapshot, on loopback: logged, not asserted. The page is
// served by a proxy in front of the server (so it is of the server's
// origin), which passes everything else on.
func TestClientJSFirstSnapshotTime(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","clientData":{"name":"Alice"}}`))
	srv := startServer(t, loginEnv(hook.URL))
	if st, _, body := do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `{"v":1}`, "Authorization", "Bearer "+signToken(t, "writer", time.Hour)); st != http.StatusCreated {
		t.Fatalf("PUT doc: %d %s", st, body)
	}
	u, _ := url.Parse(srv.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = r.In.Host },
		FlushInterval: -1,
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/timing.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, timingPage)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.CloseClientConnections)
	t.Cleanup(front.Close)

	page := newBrowser(t, 40*time.Second)
	type timing struct{ Start, Loaded, Login, Snapshot float64 }
	for i, what := range []string{"first load", "second load", "third load"} {
		if err := chromedp.Do(page, chromedp.Navigate(front.URL+"/timing.html")); err != nil {
			t.Fatal(err)
		}
		waitPage(t, page, "the first snapshot ("+what+")", `!!window.timing`, 10*time.Second)
		tm, err := chromedp.Run(page, chromedp.Evaluate[timing](`window.timing`))
		if err != nil {
			t.Fatal(err)
		}
		if tm.Snapshot <= 0 || tm.Snapshot < tm.Login || tm.Login < tm.Loaded {
			t.Errorf("%s: timing %+v out of order", what, tm)
		}
		t.Logf("%s (%d): page opened to first snapshot %.1f ms (script started %.1f, client.js imported %.1f, logged in %.1f)", what, i+1, tm.Snapshot, tm.Start, tm.Loaded, tm.Login)
		pageRun(t, page, `fetch('/auth/logout', {method: 'POST'}).then(() => true)`) // the next load logs in again
	}
}
