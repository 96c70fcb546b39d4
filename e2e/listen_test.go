package e2e

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

// Listening (listen=PREFIX/*): providers are told when a name under their
// prefix gets its first subscriber and when its last one leaves, one
// listener per name at a time.

// listenEnv is the environment of listening tests: a short LEAVE_GRACE,
// and heartbeats often enough that a closed client is noticed soon (a
// detached stream learns that its client went when a write fails).
var listenEnv = map[string]string{"LEAVE_GRACE": "1s", "HEARTBEAT_INTERVAL": "100ms"}

type listenMsg struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Active bool   `json:"active"`
}

// openListener opens a stream on query and returns it after its ready
// frame, with its stream id.
func openListener(t *testing.T, base, query string) (*sseClient, string) {
	t.Helper()
	c := openSSE(t, base+"/stream?"+query, "")
	ready := c.Expect(t, "ready").Decode(t)
	return c, ready["stream"].(string)
}

// nextListen returns the next listen frame of c, skipping any other.
func nextListen(t *testing.T, c *sseClient, timeout time.Duration) listenMsg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f := c.Next(t, time.Until(deadline))
		if f.Event != "listen" {
			continue
		}
		if f.ID != "" {
			t.Errorf("listen frame with an id %q: side frames are not resumable", f.ID)
		}
		var m listenMsg
		decodeInto(t, f, &m)
		return m
	}
}

func decodeInto(t *testing.T, f frame, v any) {
	t.Helper()
	m := f.Decode(t)
	rv := reflect.ValueOf(v).Elem()
	rv.FieldByName("Kind").SetString(m["kind"].(string))
	rv.FieldByName("Name").SetString(m["name"].(string))
	rv.FieldByName("Active").SetBool(m["active"].(bool))
	if len(m) != 3 {
		t.Errorf("listen frame %s: want exactly kind, name and active", f.Data)
	}
}

func expectListen(t *testing.T, c *sseClient, want listenMsg) {
	t.Helper()
	if got := nextListen(t, c, 10*time.Second); got != want {
		t.Fatalf("listen frame %+v, want %+v", got, want)
	}
}

// quiet checks that c gets no listen frame for d.
func quiet(t *testing.T, c *sseClient, d time.Duration, who string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, ok := c.TryNext(time.Until(deadline))
		if !ok {
			return
		}
		if f.Event == "listen" {
			t.Fatalf("%s got a listen frame %s, want none", who, f.Data)
		}
	}
}

// firstListen returns which of cs gets a listen frame first, and it.
func firstListen(t *testing.T, timeout time.Duration, cs ...*sseClient) (int, listenMsg) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, c := range cs {
			f, ok := c.TryNext(20 * time.Millisecond)
			if ok && f.Event == "listen" {
				var m listenMsg
				decodeInto(t, f, &m)
				return i, m
			}
		}
	}
	t.Fatalf("no listen frame in %v", timeout)
	return 0, listenMsg{}
}

func addSubscription(t *testing.T, base, stream, body string) {
	t.Helper()
	st, _, b := do(t, http.MethodPost, base+"/stream/"+stream+"/subscriptions", "application/json", body)
	if st != http.StatusNoContent {
		t.Fatalf("add %s to %s: %d %s", body, stream, st, b)
	}
}

// One instance: of two listeners of a prefix, exactly one is told of the
// first subscriber; when its stream closes the other is told; when the
// last subscriber leaves, the told one hears active:false, only after
// LEAVE_GRACE, and a subscriber that comes back within the grace causes
// no flap.
func TestListenHandOver(t *testing.T) {
	srv := startServer(t, listenEnv)
	l1, _ := openListener(t, srv.URL, "listen=prices/*")
	l2, id2 := openListener(t, srv.URL, "record=other")
	l2.Expect(t, "snapshot")
	addSubscription(t, srv.URL, id2, `{"listen":"prices/*"}`) // added to an open stream

	sub, _ := openListener(t, srv.URL, "record=prices/eur")
	active := listenMsg{Kind: "record", Name: "prices/eur", Active: true}
	i, m := firstListen(t, 10*time.Second, l1, l2)
	if m != active {
		t.Fatalf("listen frame %+v, want %+v", m, active)
	}
	told, other := []*sseClient{l1, l2}[i], []*sseClient{l2, l1}[i]
	quiet(t, other, 300*time.Millisecond, "the other listener")

	// More subscribers of the name tell nobody anything.
	more, _ := openListener(t, srv.URL, "record=prices/eur")
	path := openSSE(t, srv.URL+"/records/prices/eur?path=x", "")
	quiet(t, told, 200*time.Millisecond, "the told listener")
	more.Close()
	path.Close()

	told.Close()
	expectListen(t, other, active)

	// The subscriber goes and comes back within the grace: no flap.
	sub.Close()
	sub, _ = openListener(t, srv.URL, "record=prices/eur")
	quiet(t, other, 1500*time.Millisecond, "the listener across a reconnect")

	sub.Close()
	closed := time.Now()
	expectListen(t, other, listenMsg{Kind: "record", Name: "prices/eur"})
	if d := time.Since(closed); d < time.Second {
		t.Errorf("active:false %v after the last subscriber left, before LEAVE_GRACE (1s)", d)
	}
}

// A name goes to a listener of the longest prefix that covers it.
func TestListenLongestPrefix(t *testing.T) {
	srv := startServer(t, listenEnv)
	short, _ := openListener(t, srv.URL, "listen=prices/*")
	long, _ := openListener(t, srv.URL, "listen=prices/eur/*")
	time.Sleep(200 * time.Millisecond) // both registered before the demand (either order works; this one is the test)
	openListener(t, srv.URL, "record=prices/eur/day&event=prices/usd")
	expectListen(t, long, listenMsg{Kind: "record", Name: "prices/eur/day", Active: true})
	expectListen(t, short, listenMsg{Kind: "event", Name: "prices/usd", Active: true})
	quiet(t, long, 300*time.Millisecond, "the long prefix's listener")
	quiet(t, short, 100*time.Millisecond, "the short prefix's listener")
}

// A listener's own subscriptions are not demand for it, and collection or
// wildcard subscriptions are demand for no name; an exact event
// subscription is.
func TestListenWhatIsDemand(t *testing.T) {
	srv := startServer(t, listenEnv)
	l, _ := openListener(t, srv.URL, "listen=prices/*&record=prices/eur&event=prices/news")
	openListener(t, srv.URL, "event=prices/*")
	quiet(t, l, 500*time.Millisecond, "the listener")

	openListener(t, srv.URL, "event=prices/news")
	expectListen(t, l, listenMsg{Kind: "event", Name: "prices/news", Active: true})
	openSSE(t, srv.URL+"/records/prices/eur?path=a.b", "") // a path subscription is demand for its record
	expectListen(t, l, listenMsg{Kind: "record", Name: "prices/eur", Active: true})
}

// Two instances on Postgres: demand on A tells a listener on B; when B's
// listener goes while the demand lasts, a listener on A is told; an
// event subscriber on B is demand for A's listener, which hears
// active:false when it leaves.
func TestPGListen(t *testing.T) {
	_, servers := pgServers(t, 2, listenEnv)
	a, b := servers[0].URL, servers[1].URL
	lb, _ := openListener(t, b, "listen=prices/*")
	time.Sleep(200 * time.Millisecond)
	openListener(t, a, "record=prices/eur")
	active := listenMsg{Kind: "record", Name: "prices/eur", Active: true}
	expectListen(t, lb, active)

	la, _ := openListener(t, a, "listen=prices/*")
	quiet(t, la, 300*time.Millisecond, "the second listener")
	lb.Close()
	expectListen(t, la, active)

	ev, _ := openListener(t, b, "event=prices/news")
	expectListen(t, la, listenMsg{Kind: "event", Name: "prices/news", Active: true})
	ev.Close()
	expectListen(t, la, listenMsg{Kind: "event", Name: "prices/news"})
}
