package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestClientJSTwoPagesLive: two pages of two users (alice, bob) see each
// other through the library: bob's record writes, patch and delete reach
// alice's live collection; his path write her path subscription; his
// event her event subscription; his subscription to a name is demand that
// her listen sees start and, when he unsubscribes, stop; she sees him come
// online and, when he closes, go offline (presence of everyone and of
// bob alone); he calls the RPC she provides. Then she unsubscribes
// everything but one record and one event subscription and stops
// providing: later changes, events, demand and presence reach only those
// two, and the RPC finds no provider. A presence callback added to a
// subscription already open is told the state now.
func TestClientJSTwoPagesLive(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret, "LEAVE_GRACE": "300ms", "RPC_ACK_TIMEOUT": "1s"})
	writer := signToken(t, "writer", time.Hour)
	write := func(method, path, body string) {
		t.Helper()
		if st, _, b := do(t, method, srv.URL+path, "application/json", body, "Authorization", "Bearer "+writer); st/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, st, b)
		}
	}
	write(http.MethodPut, "/records/doc", `{"position":{"x":0}}`)
	a := newBrowser(t, 60*time.Second)
	b, cancelB := chromedp.NewContext(a)
	defer cancelB()
	open := func(ctx context.Context, user string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/healthz")); err != nil {
			t.Fatal(err)
		}
		pageRun(t, ctx, `import('/client.js').then(async (m) => {
			window.sb = await m.switchboard(location.origin, {token: `+strconvQuote(signToken(t, user, time.Hour))+`});
			window.got = {col: [], x: [], ev: [], keep: [], whole: [], presence: [], bob: [], listen: []};
			return true;
		})`)
	}
	open(a, "alice")
	open(b, "bob")
	pageRun(t, a, `(() => {
		window.stops = [
			sb.collection('driver/*').subscribe({
				snapshot: (n, d, m) => got.col.push('snapshot ' + n),
				synced: (c) => got.col.push('synced ' + c),
				change: (n, d, m) => got.col.push('change ' + n + ' ' + m.version + ' ' + JSON.stringify(d)),
				delete: (n, d, m) => got.col.push('delete ' + n + ' ' + m.version),
			}),
			sb.record('doc').subscribe('position.x', (d) => got.x.push(d)),
			sb.event.subscribe('chat/*', (d, m) => got.ev.push(m.name + ' ' + JSON.stringify(d))),
			sb.presence.subscribe((u, on) => got.presence.push(u + ' ' + on)),
			sb.presence.subscribe('bob', (u, on) => got.bob.push(u + ' ' + on)),
			sb.listen('prices/*', (n, active, kind) => got.listen.push(kind + ' ' + n + ' ' + active)),
		];
		sb.record('doc').subscribe((d, m) => got.whole.push(m.version));
		sb.event.subscribe('chat/keep', (d) => got.keep.push(d));
		window.stopProvide = sb.rpc.provide('add-two', (d) => d.a + d.b);
		return true;
	})()`)
	waitPage(t, a, "alice's snapshots and presence", `got.col.includes('synced 0') && got.x.length === 1 && got.presence.includes('alice true') && got.bob.includes('bob false')`, 10*time.Second)
	pageRun(t, b, `(window.stopEur = sb.record('prices/eur').subscribe(() => {}), sb.presence.subscribe((u, on) => got.presence.push(u + ' ' + on)), true)`)
	waitPage(t, a, "bob online", `got.presence.includes('bob true') && got.bob.includes('bob true')`, 10*time.Second)
	waitPage(t, b, "alice online, seen by bob", `got.presence.includes('alice true')`, 10*time.Second)
	waitPage(t, a, "bob's demand for prices/eur", `got.listen.includes('record prices/eur true')`, 10*time.Second)

	pageRun(t, b, `sb.record('driver/1').set({x: 1})`)
	pageRun(t, b, `sb.record('driver/1').patch({y: 2})`)
	pageRun(t, b, `sb.record('driver/1').delete().then(() => true)`)
	pageRun(t, b, `sb.record('doc').set('position.x', 5)`)
	pageRun(t, b, `sb.event.emit('chat/lobby', {msg: 'hi'})`)
	if got := pageCall(t, b, `sb.rpc.make('add-two', {a: 2, b: 3}, {timeout: 10000}).catch(e => e.code)`); got != "5" {
		t.Errorf("bob's call of alice's add-two: %s, want 5", got)
	}
	pageRun(t, b, `(stopEur(), true)`)
	waitPage(t, a, "bob's changes and the end of his demand", `got.col.length >= 4 && got.x.length >= 2 && got.ev.length >= 1 && got.listen.length >= 2`, 10*time.Second)
	pageRun(t, b, `(sb.close(), true)`)
	waitPage(t, a, "bob offline", `got.presence.includes('bob false') && got.bob.includes('bob false')`, 10*time.Second)
	// A later callback on the same subscriptions is told the state now.
	late := pageRun(t, a, `new Promise((ok) => {
		const late = {all: [], bob: []};
		const stopAll = sb.presence.subscribe((u, on) => late.all.push(u + ' ' + on));
		const stopBob = sb.presence.subscribe('bob', (u, on) => late.bob.push(u + ' ' + on));
		setTimeout(() => { stopAll(); stopBob(); ok(late); }, 200);
	})`)
	if late != `{"all":["alice true"],"bob":["bob false"]}` {
		t.Errorf("presence callbacks added later were told %s, want alice online and bob offline", late)
	}

	type seen struct {
		Col, Ev, Presence, Bob, Listen []string
		X                              []any
		Whole                          []int
		Keep                           []string
	}
	read := func() seen {
		t.Helper()
		var s seen
		if err := json.Unmarshal([]byte(pageRun(t, a, `got`)), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := read()
	want := seen{
		Col:      []string{"synced 0", `change driver/1 1 {"x":1}`, `change driver/1 2 {"x":1,"y":2}`, "delete driver/1 3"},
		X:        []any{0.0, 5.0},
		Ev:       []string{`chat/lobby {"msg":"hi"}`},
		Presence: []string{"alice true", "bob true", "bob false"},
		Bob:      []string{"bob false", "bob true", "bob false"},
		Listen:   []string{"record prices/eur true", "record prices/eur false"},
		Whole:    []int{1, 2},
		Keep:     []string{},
	}
	if !reflect.DeepEqual(before, want) {
		t.Errorf("alice saw\n%+v\nwant\n%+v", before, want)
	}

	// Alice unsubscribes all but doc and chat/keep, and stops providing.
	pageRun(t, a, `(stops.forEach((stop) => stop()), stopProvide(), true)`)
	write(http.MethodPut, "/records/driver/2", `{"x":2}`)
	write(http.MethodPut, "/records/doc", `{"position":{"x":9}}`)
	write(http.MethodPost, "/events/chat/lobby", `{"msg":"gone"}`)
	write(http.MethodPost, "/events/chat/keep", `"kept"`)
	carol := openSSE(t, srv.URL+"/stream?record=prices/usd&presence=*&access_token="+url.QueryEscape(signToken(t, "carol", time.Hour)), "")
	carol.Expect(t, "ready")
	waitPage(t, a, "the subscriptions kept", `got.whole.length === 3 && got.keep.length === 1`, 10*time.Second)
	time.Sleep(time.Second) // room for anything unsubscribed to arrive (the grace is 300 ms)
	after := read()
	want.Whole, want.Keep = []int{1, 2, 3}, []string{"kept"}
	if !reflect.DeepEqual(after, want) {
		t.Errorf("after unsubscribing, alice saw\n%+v\nwant\n%+v", after, want)
	}
	st, _, body := do(t, http.MethodPost, srv.URL+"/rpc/add-two?timeout=500ms", "application/json", `{"a":1,"b":1}`, "Authorization", "Bearer "+writer)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(string(body), "NO_RPC_PROVIDER") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond) // a provider stays registered for RPC_ACK_TIMEOUT after its last poll
		st, _, body = do(t, http.MethodPost, srv.URL+"/rpc/add-two?timeout=500ms", "application/json", `{"a":1,"b":1}`, "Authorization", "Bearer "+writer)
	}
	if !strings.Contains(string(body), "NO_RPC_PROVIDER") {
		t.Errorf("add-two after alice stopped providing: %d %s, want NO_RPC_PROVIDER", st, body)
	}
}
