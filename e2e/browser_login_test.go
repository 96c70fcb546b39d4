package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts a headless Chromium for the test, ended with it or
// after timeout.
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no headless Chromium at %s (%v): run `make test`, which installs Debian's chromium-headless-shell", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
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
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	return bctx
}

// pageFetch POSTs from the page to a path of its own origin, as a page's
// script does (the browser adds Origin, sends the cookie and keeps the
// one it is given), and returns the status and the expiresAt answered.
func pageFetch(t *testing.T, ctx context.Context, path, body string) (int, time.Time) {
	t.Helper()
	init := `{method: 'POST'}`
	if body != "" {
		init = `{method: 'POST', headers: {'Content-Type': 'application/json'}, body: ` + body + `}`
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch('`+path+`', `+init+`).then(async r => JSON.stringify({status: r.status, body: await r.text()}))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch %s from the page: %v", path, err)
	}
	var res struct {
		Status int
		Body   string
	}
	json.Unmarshal([]byte(out), &res)
	var a loginAnswer
	if res.Status == http.StatusOK && json.Unmarshal([]byte(res.Body), &a) != nil {
		t.Fatalf("fetch %s: %s", path, out)
	}
	return res.Status, a.ExpiresAt
}

// TestBrowserLoginCookie: in a real browser, a page of the server logs in
// with ?cookie=true (through a real webhook) and opens an EventSource
// that works with the cookie alone. It refreshes the cookie before the
// token expires; the stream ends when the old token does, and the
// browser's automatic reconnect comes back with the new cookie and
// Last-Event-ID: the write made meanwhile arrives once, in order. Then,
// without a refresh, the new token expires too, and the reconnect is
// refused: the EventSource ends CLOSED.
func TestBrowserLoginCookie(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","clientData":{"name":"Alice"},"serverData":{"role":"admin"}}`))
	srv := startServer(t, loginEnv(hook.URL, "JWT_TTL", "10s", "STREAM_RETRY", "200ms"))
	writer := signToken(t, "writer", time.Hour)
	write := func(what, method, path, body string) {
		t.Helper()
		if st, _, b := do(t, method, srv.URL+path, "application/json", body, "Authorization", "Bearer "+writer); st/100 != 2 {
			t.Fatalf("%s: %d %s", what, st, b)
		}
	}
	bctx := newBrowser(t, 40*time.Second)
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatalf("navigate to %s/healthz: %v", srv.URL, err)
	}
	status, firstExp := pageFetch(t, bctx, "/auth/login?cookie=true", `JSON.stringify({user: 'alice', password: 'pw'})`)
	if status != http.StatusOK {
		t.Fatalf("login from the page: %d", status)
	}
	if cookies, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`)); err != nil || strings.Contains(cookies, "sb_token") {
		t.Errorf("the page's script sees document.cookie %q (%v): sb_token must be HttpOnly", cookies, err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](collectFrames)); err != nil {
		t.Fatalf("open EventSource: %v", err)
	}
	waitBrowser(t, bctx, "the snapshot of doc", `window.frames.some(f => f.type === 'snapshot' && JSON.parse(f.data).name === 'doc')`, 5*time.Second)
	write("PUT doc v1", http.MethodPut, "/records/doc", `{"v":1}`)
	waitBrowser(t, bctx, "record version 1", recordVersion(1), 5*time.Second)
	write("POST chat/lobby", http.MethodPost, "/events/chat/lobby", `{"msg":"hi"}`)
	waitBrowser(t, bctx, "the chat/lobby event", `window.frames.some(f => f.type === 'event' && JSON.parse(f.data).name === 'chat/lobby')`, 5*time.Second)

	// Refresh well before the first token expires (in 9-10 s), so that the
	// second one leaves about 5 s for the reconnect.
	if d := time.Until(firstExp) - 5*time.Second; d > 0 {
		time.Sleep(d)
	}
	status, secondExp := pageFetch(t, bctx, "/auth/refresh", "")
	if status != http.StatusOK || !secondExp.After(firstExp) {
		t.Fatalf("refresh from the page: %d, expiry %v after %v", status, secondExp, firstExp)
	}
	if time.Now().After(firstExp) {
		t.Fatalf("the refresh came after the first token expired (%v): the machine is too slow for this test", firstExp)
	}

	// The stream ends when the first token expires; the browser comes back
	// 200 ms later with the new cookie.
	waitBrowser(t, bctx, "the stream to end with the first token", `window.errors >= 1 || window.opens >= 2`, time.Until(firstExp)+3*time.Second)
	if ended := time.Now(); ended.Before(firstExp.Add(-time.Second)) {
		t.Errorf("the stream ended at %v, before its token's expiry %v", ended, firstExp)
	}
	write("PUT doc v2", http.MethodPut, "/records/doc", `{"v":2}`)
	waitBrowser(t, bctx, "the reconnect with the new cookie", `window.opens >= 2`, 3*time.Second)
	waitBrowser(t, bctx, "record version 2", recordVersion(2), 3*time.Second)
	if time.Now().After(secondExp) {
		t.Fatalf("version 2 came after the second token expired (%v): the machine is too slow for this test", secondExp)
	}
	frames, err := chromedp.Run(bctx, chromedp.Evaluate[[]browserFrame](`window.frames`))
	if err != nil {
		t.Fatalf("read window.frames: %v", err)
	}
	checkBrowserFrames(t, frames)

	// No refresh now: the second token expires, the browser has dropped the
	// cookie, and the reconnect gets 401: the EventSource gives up.
	waitBrowser(t, bctx, "the EventSource to be CLOSED after the second token expired", `window.es.readyState === 2`, time.Until(secondExp)+5*time.Second)
	if time.Now().Before(secondExp) {
		t.Errorf("the EventSource closed before the second token's expiry %v", secondExp)
	}
	// The log is written through a buffer: wait for the refusal's line.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(srv.Log(), `"path":"/stream","status":401`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the server's log has no refused reconnect (GET /stream 401)")
			break
		}
	}
	// Leave time for a duplicate to show up; nothing more arrived.
	time.Sleep(300 * time.Millisecond)
	after, err := chromedp.Run(bctx, chromedp.Evaluate[[]browserFrame](`window.frames`))
	if err != nil {
		t.Fatalf("read window.frames: %v", err)
	}
	for _, f := range after[len(frames):] {
		if f.Type != "ready" {
			t.Errorf("after version 2: %s frame %s", f.Type, f.Data)
		}
	}
}
