package e2e

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/switchboard-dev/switchboard/api/client"
)

// storedSecrets is a page expression: everything a script of the page can
// store across page loads (local and session storage, the cookies it can
// read) as one string.
const storedSecrets = `JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage}) + document.cookie`

// TestClientJSCookieMode: a page in cookie mode logs in through a real
// webhook (the server sets the HttpOnly cookie) and, since the cookie
// never authorises a write, the library writes with a bearer token it
// keeps in memory: a record write, a path write, an event, an RPC and the
// subscription changes of its stream all work, and keep working after the
// first token's lifetime (the library refreshes token and cookie before
// expiry; the stream resumes with the renewed cookie, losing nothing). A
// second page of the same browser trades the cookie for a token when it
// opens, with no login. No token is ever in localStorage, sessionStorage
// or document.cookie. Logout revokes it: writes fail, and a new page
// starts anonymous.
func TestClientJSCookieMode(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","clientData":{"name":"Alice"}}`))
	srv := startServer(t, loginEnv(hook.URL, "JWT_TTL", "3s", "STREAM_RETRY", "100ms"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go client.NewClient(srv.URL, client.WithToken(signToken(t, "provider", time.Hour))).Provide(ctx, []string{"add-two"}, func(_ context.Context, r client.Request) (any, error) {
		var in struct{ A, B int }
		if err := r.Decode(&in); err != nil {
			return nil, err
		}
		return in.A + in.B, nil
	})

	if st, _, body := do(t, "PUT", srv.URL+"/records/doc", "application/json", `{"position":{"x":0}}`, "Authorization", "Bearer "+signToken(t, "writer", time.Hour)); st != 201 {
		t.Fatalf("PUT doc: %d %s", st, body)
	}
	a := newBrowser(t, 60*time.Second)
	if err := chromedp.Do(a, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	open := `import('/client.js').then(async (m) => { window.sb = await m.switchboard(location.origin, {cookie: true}); return sb.token === null; })`
	if got := pageRun(t, a, open); got != "true" {
		t.Errorf("a page without the cookie has token %s, want none", pageRun(t, a, `sb.token`))
	}
	if got := pageRun(t, a, `sb.record('doc').set({v: 0}).then(() => 'resolved', e => e.code)`); got != `"UNAUTHENTICATED"` {
		t.Errorf("a write before login: %s, want UNAUTHENTICATED", got)
	}
	if got := pageRun(t, a, `sb.login({user: 'alice', password: 'pw'}).then(r => r.id + ' ' + r.clientData.name)`); got != `"alice Alice"` {
		t.Fatalf("login: %s, want alice Alice", got)
	}
	// The first subscription opens the stream (with the cookie); the
	// others are POST /stream/{id}/subscriptions, which need the bearer.
	pageRun(t, a, `(() => {
		window.got = {whole: [], x: [], ev: []};
		sb.record('doc').subscribe((d, m) => got.whole.push(m.version));
		return new Promise((ok) => setTimeout(() => {
			sb.record('doc').subscribe('position.x', (d, m) => got.x.push(d));
			sb.event.subscribe('chat/*', (d, m) => got.ev.push(d.msg));
			ok(true);
		}, 300));
	})()`)
	waitPage(t, a, "the snapshots", `got.whole.length === 1 && got.x.length === 1`, 10*time.Second)
	first := pageRun(t, a, `sb.token`)
	if got := pageRun(t, a, `sb.record('doc').set({position: {x: 1}})`); got != "2" {
		t.Errorf("set: %s, want version 2", got)
	}
	if got := pageRun(t, a, `sb.record('doc').set('position.x', 2)`); got != "3" {
		t.Errorf("set('position.x', 2): %s, want version 3", got)
	}
	if got := pageRun(t, a, `sb.event.emit('chat/lobby', {msg: 'one'}).then(id => typeof id)`); got != `"string"` {
		t.Errorf("emit: %s, want an id", got)
	}
	rpc := `sb.rpc.make('add-two', {a: 2, b: 3}, {timeout: 5000})`
	got := pageRun(t, a, rpc+`.catch(e => e.code)`)
	for deadline := time.Now().Add(10 * time.Second); got == `"NO_RPC_PROVIDER"` && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // the provider is not polling yet
		got = pageRun(t, a, rpc+`.catch(e => e.code)`)
	}
	if got != "5" {
		t.Errorf("rpc add-two: %s, want 5", got)
	}
	waitPage(t, a, "versions 2 and 3 and the event", `got.whole.length === 3 && got.ev.length === 1`, 10*time.Second)

	// Past the first token's lifetime and the verifier's 5 s leeway.
	time.Sleep(8500 * time.Millisecond)
	if pageRun(t, a, `sb.token`) == first {
		t.Errorf("the token was not refreshed; server log:\n%s", srv.Log())
	}
	if got := pageRun(t, a, `sb.record('doc').set('position.x', 3)`); got != "4" {
		t.Errorf("a path write after the first token expired: %s, want version 4", got)
	}
	pageRun(t, a, `sb.event.emit('chat/lobby', {msg: 'two'})`)
	waitPage(t, a, "version 4 and the second event", `got.whole.length === 4 && got.ev.length === 2`, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // room for a duplicate
	var g struct {
		Whole []int64
		X     []any
		Ev    []string
	}
	if err := json.Unmarshal([]byte(pageRun(t, a, `got`)), &g); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.Whole, []int64{1, 2, 3, 4}) || !reflect.DeepEqual(g.X, []any{0.0, 1.0, 2.0, 3.0}) || !reflect.DeepEqual(g.Ev, []string{"one", "two"}) {
		t.Errorf("page saw versions %v, position.x %v, events %v; want [1 2 3 4], [0 1 2 3], [one two]", g.Whole, g.X, g.Ev)
	}

	// A second page of the same browser: the cookie is enough to write.
	b, cancelB := chromedp.NewContext(a)
	defer cancelB()
	if err := chromedp.Do(b, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	if got := pageRun(t, b, open); got != "false" {
		t.Error("a page opened with the cookie has no token")
	}
	if got := pageRun(t, b, `sb.record('doc').patch({by: 'b'})`); got != "5" {
		t.Errorf("page b's patch: %s, want version 5", got)
	}
	for name, ctx := range map[string]context.Context{"a": a, "b": b} {
		s := pageRun(t, ctx, storedSecrets)
		if strings.Contains(s, "eyJ") || strings.Contains(s, "sb_token") {
			t.Errorf("page %s stores %s: a token where a script or another page finds it", name, s)
		}
	}

	pageRun(t, b, `(sb.close(), true)`) // no refresh of b's renews the cookie after the logout
	pageRun(t, a, `sb.logout().then(() => true)`)
	if got := pageRun(t, a, `sb.record('doc').set({v: 5}).then(() => 'resolved', e => e.code)`); got != `"UNAUTHENTICATED"` {
		t.Errorf("a write after logout: %s, want UNAUTHENTICATED", got)
	}
	c, cancelC := chromedp.NewContext(a)
	defer cancelC()
	if err := chromedp.Do(c, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	if got := pageRun(t, c, open); got != "true" {
		t.Error("a page opened after logout has a token")
	}
}
