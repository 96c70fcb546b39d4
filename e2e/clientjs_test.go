package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestClientJSServed checks GET /client.js and GET /client.d.ts: served
// without a token, with their types, a version in the first line, and a
// library under 20 KiB.
func TestClientJSServed(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	for _, c := range []struct{ path, ctype string }{
		{"/client.js", "text/javascript"},
		{"/client.d.ts", "application/typescript"},
	} {
		code, h, body := do(t, http.MethodGet, srv.URL+c.path, "", "")
		if code != http.StatusOK {
			t.Fatalf("GET %s without a token: %d %s", c.path, code, body)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", c.path, ct, c.ctype)
		}
		first, _, _ := strings.Cut(string(body), "\n")
		if !strings.Contains(first, "Switchboard browser client 0.") {
			t.Errorf("GET %s: first line %q names no version", c.path, first)
		}
		if c.path == "/client.js" {
			t.Logf("client.js: %d bytes", len(body))
			if len(body) >= 20<<10 {
				t.Errorf("client.js is %d bytes, over 20 KiB", len(body))
			}
		}
	}
}

// setupPage loads /client.js into a page of base's origin and subscribes
// window.sb to record doc (whole and at position.x) and to events chat/*,
// collecting every callback into window.got.
const setupPage = `(async () => {
	const {switchboard} = await import('/client.js');
	window.sb = await switchboard(location.origin);
	window.got = {whole: [], x: [], ev: []};
	const r = sb.record('doc');
	r.subscribe((d, m) => got.whole.push({v: m.version, op: m.op, d: d}));
	r.subscribe('position.x', (d, m) => got.x.push({v: m.version, d: d}));
	sb.event.subscribe('chat/*', (d, m) => got.ev.push({name: m.name, d: d, id: m.id}));
	return true;
})()`

type clientGot struct {
	Whole []struct {
		V  int64           `json:"v"`
		Op string          `json:"op"`
		D  json.RawMessage `json:"d"`
	} `json:"whole"`
	X []struct {
		V int64 `json:"v"`
		D any   `json:"d"`
	} `json:"x"`
	Ev []struct {
		Name string          `json:"name"`
		D    json.RawMessage `json:"d"`
		ID   string          `json:"id"`
	} `json:"ev"`
}

func (g clientGot) versions() []int64 {
	var v []int64
	for _, w := range g.Whole {
		v = append(v, w.V)
	}
	return v
}

func (g clientGot) xs() []any {
	var v []any
	for _, x := range g.X {
		v = append(v, x.D)
	}
	return v
}

// openPage navigates ctx to base's /healthz (to be of its origin) and runs setupPage.
func openPage(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/healthz")); err != nil {
		t.Fatalf("navigate to %s/healthz: %v", base, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](setupPage, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("load /client.js and subscribe: %v", err)
	}
}

// pageRun runs an async expression in the page and returns its JSON result.
func pageRun(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => JSON.stringify(await (async () => `+expr+`)()))()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("run %s in the page: %v", expr, err)
	}
	return out
}

// pageCall runs call, an expression that makes an RPC and resolves to
// its answer or its error's code, again while no provider polls yet
// (provide() returns before its first poll reaches the server), for up
// to 10 s; it returns the last result.
func pageCall(t *testing.T, ctx context.Context, call string) string {
	t.Helper()
	got := pageRun(t, ctx, call)
	for deadline := time.Now().Add(10 * time.Second); got == `"NO_RPC_PROVIDER"` && time.Now().Before(deadline); got = pageRun(t, ctx, call) {
		time.Sleep(50 * time.Millisecond)
	}
	return got
}

// waitPage polls predicate in the page until it is true or fails with window.got.
func waitPage(t *testing.T, ctx context.Context, what, predicate string, timeout time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err == nil {
		return
	}
	dump, derr := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.got)`))
	if derr != nil {
		dump = "(unreadable: " + derr.Error() + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("not within %v: %w", timeout, err)
	}
	t.Fatalf("wait for %s: %v\npage: %s", what, err, dump)
}

func readGot(t *testing.T, ctx context.Context) clientGot {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.got)`))
	if err != nil {
		t.Fatalf("read window.got: %v", err)
	}
	var g clientGot
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("window.got %s: %v", out, err)
	}
	return g
}

// TestClientJSTwoPages: two pages using /client.js see each other's record
// writes (whole record and path subscription) and events, each exactly
// once and in order; errors carry the problem+json code.
func TestClientJSTwoPages(t *testing.T) {
	srv := startServer(t, nil)
	put(t, srv.URL, "doc", `{"position":{"x":0}}`)
	a := newBrowser(t, 40*time.Second)
	b, cancelB := chromedp.NewContext(a)
	defer cancelB()
	openPage(t, a, srv.URL)
	openPage(t, b, srv.URL)
	subscribed := `got.whole.length === 1 && got.x.length === 1`
	waitPage(t, a, "page a's snapshots", subscribed, 10*time.Second)
	waitPage(t, b, "page b's snapshots", subscribed, 10*time.Second)

	pageRun(t, a, `sb.record('doc').set('position.x', 5)`)
	pageRun(t, b, `sb.record('doc').patch({title: 't'})`)
	pageRun(t, b, `sb.record('doc').set({position: {x: 7}, title: 't'})`)
	if id := pageRun(t, a, `sb.event.emit('chat/lobby', {msg: 'hi'})`); id == "" || id == "null" {
		t.Errorf("emit resolved to %s, want the event's id", id)
	}
	pageRun(t, b, `sb.event.emit('other/x', 1)`) // not subscribed: never delivered
	for name, ctx := range map[string]context.Context{"a": a, "b": b} {
		waitPage(t, ctx, "page "+name+"'s changes", `got.whole.length >= 4 && got.x.length >= 3 && got.ev.length >= 1`, 10*time.Second)
	}
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	for name, ctx := range map[string]context.Context{"a": a, "b": b} {
		g := readGot(t, ctx)
		if v := g.versions(); !reflect.DeepEqual(v, []int64{1, 2, 3, 4}) {
			t.Errorf("page %s: whole-record versions %v, want [1 2 3 4]", name, v)
		}
		if x := g.xs(); !reflect.DeepEqual(x, []any{0.0, 5.0, 7.0}) {
			t.Errorf("page %s: position.x values %v, want [0 5 7]", name, x)
		}
		if len(g.Ev) != 1 || g.Ev[0].Name != "chat/lobby" || string(g.Ev[0].D) != `{"msg":"hi"}` {
			t.Errorf("page %s: events %+v, want chat/lobby {\"msg\":\"hi\"} once", name, g.Ev)
		}
	}
	if v := pageRun(t, b, `sb.record('doc').get('position.x')`); v != "7" {
		t.Errorf("get('position.x') = %s, want 7", v)
	}
	if v := pageRun(t, b, `sb.record('doc').version`); v != "4" {
		t.Errorf("record version = %s, want 4", v)
	}
	for expr, code := range map[string]string{
		`sb.record('a//b').get()`:                  "INVALID_NAME",
		`sb.rpc.make('nobody', 1, {timeout: 500})`: "NO_RPC_PROVIDER",
	} {
		got := pageRun(t, a, expr+`.then(() => 'resolved', e => (e instanceof Error) + ' ' + e.code)`)
		if got != `"true `+code+`"` {
			t.Errorf("%s: %s, want an Error with code %s", expr, got, code)
		}
	}
}

// TestClientJSSurvivesRestart: a page behind a reverse proxy survives a
// server restart: while the server is down the proxy answers 502, which
// ends the browser's EventSource for good; the library opens a new one
// with ?lastEventId= and gets the changes made while it was away, with no
// change lost or doubled.
func TestClientJSSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, map[string]string{"DATA_DIR": dir})
	var target atomic.Pointer[url.URL]
	var bad atomic.Int64
	u, _ := url.Parse(srv.URL)
	target.Store(u)
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target.Load()); r.Out.Host = r.In.Host },
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			bad.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	proxy := httptest.NewServer(rp)
	t.Cleanup(proxy.CloseClientConnections)
	t.Cleanup(proxy.Close)

	put(t, srv.URL, "doc", `{"position":{"x":1}}`)
	page := newBrowser(t, 60*time.Second)
	openPage(t, page, proxy.URL)
	waitPage(t, page, "the snapshots", `got.whole.length === 1 && got.x.length === 1`, 10*time.Second)
	pageRun(t, page, `sb.record('doc').set('position.x', 2)`) // version 2, seen live
	waitPage(t, page, "version 2", `got.whole.length === 2`, 5*time.Second)

	srv.Stop(t)
	dead, _ := url.Parse("http://127.0.0.1:1") // nothing listens: every request gets 502
	target.Store(dead)
	deadline := time.Now().Add(10 * time.Second)
	for bad.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if bad.Load() == 0 {
		t.Fatal("the page did not meet a 502 while the server was down")
	}
	srv = startServer(t, map[string]string{"DATA_DIR": dir})
	put(t, srv.URL, "doc", `{"position":{"x":3}}`) // version 3, made while the page was away
	publishEvent(t, srv.URL, "chat/lobby", `{"msg":"while away"}`)
	u, _ = url.Parse(srv.URL)
	target.Store(u)

	waitPage(t, page, "the changes made while away", `got.whole.length >= 3 && got.ev.length >= 1`, 20*time.Second)
	pageRun(t, page, `sb.record('doc').set('position.x', 4)`) // version 4, live again
	waitPage(t, page, "version 4", `got.whole.length >= 4`, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	g := readGot(t, page)
	if v := g.versions(); !reflect.DeepEqual(v, []int64{1, 2, 3, 4}) {
		t.Errorf("whole-record versions %v, want [1 2 3 4]", v)
	} else if op := g.Whole[2].Op; op != "set" {
		t.Errorf("version 3 came as %q, want a resumed \"set\" (a fresh stream would send a snapshot)", op)
	}
	if x := g.xs(); !reflect.DeepEqual(x, []any{1.0, 2.0, 3.0, 4.0}) {
		t.Errorf("position.x values %v, want [1 2 3 4]", x)
	}
	if len(g.Ev) != 1 {
		t.Errorf("events %+v, want the one published while away, once", g.Ev)
	}
	t.Logf("the proxy answered 502 %d times", bad.Load())
}

// TestClientJSTokenRefreshAndUnsubscribe: with a token function, writes
// carry the bearer and the stream ?access_token=; when the stream ends with
// its token's expiry, the browser's own reconnect gets 401 and the library
// reopens with the refreshed token, losing nothing. An unsubscribed
// callback is called no more.
func TestClientJSTokenRefreshAndUnsubscribe(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret, "STREAM_RETRY": "100ms"})
	page := newBrowser(t, 60*time.Second)
	if err := chromedp.Do(page, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	short := signToken(t, "alice", 2*time.Second)
	setup := `(async () => {
		const {switchboard} = await import('/client.js');
		window.tok = ` + strconvQuote(short) + `;
		window.sb = await switchboard(location.origin, {token: () => window.tok});
		window.got = {whole: [], other: []};
		sb.record('doc').subscribe((d, m) => got.whole.push({v: m.version, op: m.op}));
		window.stopOther = sb.record('other').subscribe((d, m) => got.other.push(m.version));
		return true;
	})()`
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](setup, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("set up the page: %v", err)
	}
	pageRun(t, page, `sb.record('doc').set({v: 1})`)
	pageRun(t, page, `sb.record('other').set({v: 1})`)
	waitPage(t, page, "version 1 of both", `got.whole.length === 1 && got.other.length === 1`, 5*time.Second)
	pageRun(t, page, `(stopOther(), true)`)

	// Refresh the token before the first expires; the stream still ends with the first.
	fresh := signToken(t, "alice", time.Hour)
	pageRun(t, page, `(window.tok = `+strconvQuote(fresh)+`, true)`)
	// Past the first token's expiry and the verifier's 5 s leeway: its
	// stream has ended and the browser's reconnects with it get 401.
	time.Sleep(8 * time.Second)
	pageRun(t, page, `sb.record('doc').set({v: 2})`)
	pageRun(t, page, `sb.record('other').set({v: 2})`)
	waitPage(t, page, "version 2 after the token's expiry", `got.whole.length >= 2`, 10*time.Second)
	pageRun(t, page, `sb.record('doc').set({v: 3})`)
	waitPage(t, page, "version 3", `got.whole.length >= 3`, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	out := pageRun(t, page, `got`)
	var g struct {
		Whole []struct {
			V int64 `json:"v"`
		} `json:"whole"`
		Other []int64 `json:"other"`
	}
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("got %s: %v", out, err)
	}
	var vs []int64
	for _, w := range g.Whole {
		vs = append(vs, w.V)
	}
	if !reflect.DeepEqual(vs, []int64{1, 2, 3}) {
		t.Errorf("doc versions %v, want [1 2 3]", vs)
	}
	if !reflect.DeepEqual(g.Other, []int64{1}) {
		t.Errorf("other versions %v after unsubscribing at 1, want [1]", g.Other)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestClientJSCollectionPresenceListen: a live collection gives its
// snapshots, synced, then changes and deletes, each once; presence shows
// the page's own user online, and GET /presence agrees; listen tells the
// page when another stream subscribes to a name under its prefix.
// Handlers added later to the open collection get its state now.
func TestClientJSCollectionPresenceListen(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	writer := signToken(t, "writer", time.Hour)
	write := func(method, name, body string) {
		t.Helper()
		if code, _, b := do(t, method, srv.URL+"/records/"+name, "application/json", body, "Authorization", "Bearer "+writer); code/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, name, code, b)
		}
	}
	write(http.MethodPut, "driver/1", `{"x":1}`)
	write(http.MethodPut, "driver/2", `{"x":2}`)
	page := newBrowser(t, 40*time.Second)
	if err := chromedp.Do(page, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	setup := `(async () => {
		const {switchboard} = await import('/client.js');
		window.sb = await switchboard(location.origin, {token: ` + strconvQuote(signToken(t, "alice", time.Hour)) + `});
		window.got = {col: [], presence: [], listen: []};
		sb.collection('driver/*').subscribe({
			snapshot: (n, d, m) => got.col.push('snapshot ' + n + ' ' + m.version),
			synced: (c) => got.col.push('synced ' + c),
			change: (n, d, m) => got.col.push('change ' + n + ' ' + m.version + ' ' + JSON.stringify(d)),
			delete: (n, d, m) => got.col.push('delete ' + n + ' ' + m.version),
		});
		sb.presence.subscribe((u, online) => got.presence.push(u + ' ' + online));
		sb.listen('prices/*', (n, active, kind) => got.listen.push(kind + ' ' + n + ' ' + active));
		return true;
	})()`
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](setup, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("set up the page: %v", err)
	}
	waitPage(t, page, "the collection's snapshots", `got.col.includes('synced 2') && got.presence.includes('alice true')`, 10*time.Second)
	write(http.MethodPut, "driver/3", `{"x":3}`)
	write(http.MethodDelete, "driver/1", "")
	bob := openSSE(t, srv.URL+"/stream?record=prices/eur&access_token="+url.QueryEscape(signToken(t, "bob", time.Hour)), "")
	bob.Expect(t, "ready")
	waitPage(t, page, "the change, the delete and the demand", `got.col.length >= 5 && got.listen.length >= 1`, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	out := pageRun(t, page, `got`)
	var g struct{ Col, Presence, Listen []string }
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("got %s: %v", out, err)
	}
	want := []string{"snapshot driver/1 1", "snapshot driver/2 1", "synced 2", `change driver/3 1 {"x":3}`, "delete driver/1 2"}
	if !reflect.DeepEqual(g.Col, want) {
		t.Errorf("collection callbacks %q, want %q", g.Col, want)
	}
	if !reflect.DeepEqual(g.Listen, []string{"record prices/eur true"}) {
		t.Errorf("listen callbacks %q, want one for prices/eur", g.Listen)
	}
	if len(g.Presence) == 0 || g.Presence[0] != "alice true" {
		t.Errorf("presence callbacks %q, want alice online first", g.Presence)
	}
	if users := pageRun(t, page, `sb.presence.get(['alice', 'carol'])`); users != `["alice"]` {
		t.Errorf("presence.get = %s, want [\"alice\"]", users)
	}
	// Handlers added later to the open collection are told its state now.
	late := pageRun(t, page, `new Promise((ok) => {
		const late = [];
		const stop = sb.collection('driver/*').subscribe({
			snapshot: (n, d, m) => late.push('snapshot ' + n + ' ' + m.version + ' ' + JSON.stringify(d)),
			synced: (c) => late.push('synced ' + c),
		});
		setTimeout(() => { stop(); ok(late); }, 200);
	})`)
	if want := `["snapshot driver/2 1 {\"x\":2}","snapshot driver/3 1 {\"x\":3}","synced 2"]`; late != want {
		t.Errorf("collection handlers added later were told %s, want %s", late, want)
	}
}

// TestClientJSProvideAndConflict: one page provides an RPC that the other
// calls (an answer and a thrown error); update() on a stale version meets
// 412, refetches, and writes what onConflict returns.
func TestClientJSProvideAndConflict(t *testing.T) {
	srv := startServer(t, nil)
	a := newBrowser(t, 40*time.Second)
	b, cancelB := chromedp.NewContext(a)
	defer cancelB()
	for _, ctx := range []context.Context{a, b} {
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
			t.Fatal(err)
		}
		pageRun(t, ctx, `import('/client.js').then(async (m) => { window.sb = await m.switchboard(location.origin); return true; })`)
	}
	pageRun(t, a, `(window.stop = sb.rpc.provide(['add-two', 'fail'], (d, m) => { if (m.name === 'fail') throw new Error('no way'); return d.a + d.b; }), true)`)
	if answer := pageCall(t, b, `sb.rpc.make('add-two', {a: 2, b: 3}, {timeout: 5000}).catch(e => e.code)`); answer != "5" {
		t.Errorf("add-two = %s, want 5", answer)
	}
	if got := pageRun(t, b, `sb.rpc.make('fail', 1).then(() => 'resolved', e => e.code + ' ' + e.message)`); got != `"RPC_ERROR no way"` {
		t.Errorf("fail: %s, want RPC_ERROR no way", got)
	}

	pageRun(t, a, `sb.record('counter').update({n: 1})`) // created at version 1
	put(t, srv.URL, "counter", `{"n":5}`)                // version 2: a's version 1 is stale
	got := pageRun(t, a, `(async () => {
		window.calls = [];
		const v = await sb.record('counter').update({n: 1}, {onConflict: (remote, local) => { calls.push([remote, local]); return {n: remote.n + local.n}; }});
		return {v, calls, now: await sb.record('counter').get()};
	})()`)
	if want := `{"v":3,"calls":[[{"n":5},{"n":1}]],"now":{"n":6}}`; got != want {
		t.Errorf("update with onConflict: %s, want %s", got, want)
	}
	if got := pageRun(t, b, `sb.record('counter').update({n: 10}).then(() => 'resolved', e => e.code)`); got != `"VERSION_CONFLICT"` {
		t.Errorf("update without onConflict on a stale version: %s, want VERSION_CONFLICT", got)
	}
}

// TestClientJSLogin: login gives the page a token that writes accept,
// refreshed before it expires (writes still work after its first lifetime
// and the leeway); logout revokes it.
func TestClientJSLogin(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","clientData":{"name":"Alice"}}`))
	srv := startServer(t, loginEnv(hook.URL, "JWT_TTL", "3s"))
	page := newBrowser(t, 40*time.Second)
	if err := chromedp.Do(page, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	pageRun(t, page, `import('/client.js').then(async (m) => { window.sb = await m.switchboard(location.origin); return true; })`)
	if got := pageRun(t, page, `sb.record('doc').set({v: 0}).then(() => 'resolved', e => e.code)`); got != `"UNAUTHENTICATED"` {
		t.Errorf("a write before login: %s, want UNAUTHENTICATED", got)
	}
	if got := pageRun(t, page, `sb.login({user: 'alice'}).then(r => r.id + ' ' + r.clientData.name)`); got != `"alice Alice"` {
		t.Errorf("login: %s, want alice Alice", got)
	}
	first := pageRun(t, page, `sb.token`)
	pageRun(t, page, `sb.record('doc').set({v: 1})`)
	time.Sleep(8500 * time.Millisecond) // past the first token's lifetime and the 5 s leeway
	if pageRun(t, page, `sb.token`) == first {
		t.Error("the token was not refreshed")
	}
	if got := pageRun(t, page, `sb.record('doc').set({v: 2})`); got != "2" {
		t.Errorf("a write after the first token expired: %s, want version 2", got)
	}
	pageRun(t, page, `sb.logout().then(() => true)`)
	if got := pageRun(t, page, `sb.record('doc').set({v: 3}).then(() => 'resolved', e => e.code)`); got != `"UNAUTHENTICATED"` {
		t.Errorf("a write after logout: %s, want UNAUTHENTICATED", got)
	}
}
