package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/server"
)

// TestPathSubscription: a path subscription gets a frame only when the
// value at its path changed, through both stream forms.
func TestPathSubscription(t *testing.T) {
	srv := startServer(t, nil)
	put(t, srv.URL, "car", `{"pos":{"x":1},"speed":3}`)
	for _, url := range []string{
		srv.URL + "/records/car?path=pos.x", // the per-record form
	} {
		c := openSSE(t, url, "")
		c.Expect(t, "ready")
		if m := c.Expect(t, "snapshot").Decode(t); m["path"] != "pos.x" || m["data"] != 1.0 || m["version"] != 1.0 {
			t.Fatalf("snapshot: %v", m)
		}
		put(t, srv.URL, "car?path=speed", `4`)  // pos.x unchanged: no frame
		put(t, srv.URL, "car?path=/pos/x", `2`) // changed
		m := c.Expect(t, "record").Decode(t)
		if m["version"] != 3.0 || m["data"] != 2.0 || m["path"] != "pos.x" || m["op"] != "patch" {
			t.Fatalf("record frame: %v", m)
		}
		do(t, http.MethodDelete, srv.URL+"/records/car", "", "")
		if m := c.Expect(t, "delete").Decode(t); m["version"] != 4.0 {
			t.Fatalf("delete frame: %v", m)
		}
		put(t, srv.URL, "car", `{"pos":{"x":2}}`)
		if m := c.Expect(t, "record").Decode(t); m["version"] != 5.0 || m["data"] != 2.0 || m["op"] != "set" { // after the delete's 4
			t.Fatalf("record frame after re-creation: %v", m)
		}
	}
}

// TestCollectionRecordCreatedByPath: a record that a path write creates
// comes to a live collection as every record created later does, with
// "op":"set", and as a patch once it exists.
func TestCollectionRecordCreatedByPath(t *testing.T) {
	srv := startServer(t, nil)
	c := openSSE(t, srv.URL+"/stream?record=d/*", "")
	c.Expect(t, "ready")
	c.Expect(t, "synced")
	put(t, srv.URL, "d/9?path=pos.x", `1`)
	if m := c.Expect(t, "record").Decode(t); m["name"] != "d/9" || m["version"] != 1.0 || m["op"] != "set" {
		t.Fatalf("the first frame of a record a path write created: %v", m)
	}
	put(t, srv.URL, "d/9?path=pos.y", `2`)
	if m := c.Expect(t, "record").Decode(t); m["version"] != 2.0 || m["op"] != "patch" {
		t.Fatalf("the frame of a path write to it: %v", m)
	}
}

// TestDynamicSubscriptions adds and removes subscriptions of an open
// stream, and checks that a resume keeps them.
func TestDynamicSubscriptions(t *testing.T) {
	srv := startServer(t, nil)
	put(t, srv.URL, "doc", `{"a":1}`)
	c := openSSE(t, srv.URL+"/stream", "")
	id := c.Expect(t, "ready").Decode(t)["stream"].(string)
	subs := srv.URL + "/stream/" + id + "/subscriptions"

	if st, _, b := do(t, http.MethodPost, subs, "application/json", `{"record":"doc"}`); st != http.StatusNoContent {
		t.Fatalf("add record: %d %s", st, b)
	}
	if m := c.Expect(t, "snapshot").Decode(t); m["version"] != 1.0 {
		t.Fatalf("snapshot: %v", m)
	}
	if st, _, b := do(t, http.MethodPost, subs, "application/json", `{"event":"news/*"}`); st != http.StatusNoContent {
		t.Fatalf("add event: %d %s", st, b)
	}
	// The subscription is in place once the hub has it: publish until one arrives.
	publishEvent(t, srv.URL, "news/a", `1`)
	time.Sleep(100 * time.Millisecond)
	put(t, srv.URL, "doc", `{"a":2}`)
	var kinds []string
	for len(kinds) < 2 {
		kinds = append(kinds, c.Next(t, 5*time.Second).Event)
	}
	if strings.Join(kinds, ",") != "event,record" {
		t.Fatalf("frames %v, want event then record", kinds)
	}
	token := c.LastID
	c.Close()

	// Resumed elsewhere (a plain reconnect to the original URL): the
	// subscriptions added later are still there.
	put(t, srv.URL, "doc", `{"a":3}`)
	c = openSSE(t, srv.URL+"/stream", token)
	ready := c.Expect(t, "ready").Decode(t)
	if ready["stream"] != id || len(ready["subscriptions"].([]any)) != 2 {
		t.Fatalf("ready after resume: %v", ready)
	}
	if m := c.Expect(t, "record").Decode(t); m["version"] != 3.0 {
		t.Fatalf("missed change: %v", m)
	}
	if st, _, _ := do(t, http.MethodDelete, subs, "application/json", `{"record":"doc"}`); st != http.StatusNoContent {
		t.Fatalf("remove: %d", st)
	}
	time.Sleep(100 * time.Millisecond)
	put(t, srv.URL, "doc", `{"a":4}`)
	publishEvent(t, srv.URL, "news/b", `2`)
	if f := c.Next(t, 5*time.Second); f.Event != "event" {
		t.Fatalf("after removing the record subscription got %s %s", f.Event, f.Data)
	}

	for _, tc := range []struct {
		stream, body string
		status       int
	}{
		{"nosuchstream", `{"record":"doc"}`, 404},
		{id, `{"record":"a//b"}`, 400},
		{id, `{"record":"doc","event":"x"}`, 400},
		{id, `{}`, 400},
		{id, `{"presence":""}`, 400},
		{id, `{"presence":"a\u0000b"}`, 400},
		{id, `{"listen":"a"}`, 400},
		{id, `{"listen":"a//*"}`, 400},
		{id, `{"presence":"*"}`, 204},
		{id, `{"listen":"a/*"}`, 204},
	} {
		st, _, b := do(t, http.MethodPost, srv.URL+"/stream/"+tc.stream+"/subscriptions", "application/json", tc.body)
		if st != tc.status {
			t.Errorf("POST %s %s: %d %s, want %d", tc.stream, tc.body, st, b, tc.status)
		}
	}
}

// TestStreamHeadersHeartbeatLifetime: SSE headers, the retry field,
// heartbeats, and a stream that ends itself after its lifetime.
func TestStreamHeadersHeartbeatLifetime(t *testing.T) {
	srv := startServer(t, map[string]string{
		"HEARTBEAT_INTERVAL": "100ms", "STREAM_MAX_LIFETIME": "1s", "STREAM_RETRY": "250ms",
	})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/stream?event=x", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	body, err := readAll(resp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	life := time.Since(start)
	if life < 850*time.Millisecond || life > 3*time.Second {
		t.Errorf("stream lived %v, want about 1s less up to 10%% jitter", life)
	}
	text := string(body)
	if !strings.HasPrefix(text, "retry: 250\n") {
		t.Errorf("stream does not start with the retry field: %q", text[:min(40, len(text))])
	}
	if n := strings.Count(text, ": ping\n\n"); n < 5 {
		t.Errorf("%d heartbeats in %v, want about 9", n, life)
	}
}

// readAll reads a body until EOF or timeout.
func readAll(resp *http.Response, timeout time.Duration) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		var buf []byte
		chunk := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(chunk)
			buf = append(buf, chunk[:n]...)
			if err != nil {
				done <- result{buf, nil}
				return
			}
		}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(timeout):
		resp.Body.Close()
		return nil, errTimeout
	}
}

var errTimeout = &timeoutError{}

type timeoutError struct{}

func (*timeoutError) Error() string { return "timed out" }

// TestResumeTooOld: a resume point older than the retention window gets a
// reset frame and fresh snapshots.
func TestResumeTooOld(t *testing.T) {
	srv := startServer(t, map[string]string{"STREAM_RETENTION": "400ms"})
	put(t, srv.URL, "r", `1`)
	c := openSSE(t, srv.URL+"/stream?record=r", "")
	c.Expect(t, "ready")
	c.Expect(t, "snapshot")
	put(t, srv.URL, "r", `2`)
	c.Expect(t, "record")
	token := c.LastID
	c.Close()
	put(t, srv.URL, "r", `3`)
	time.Sleep(time.Second) // two trims pass: the log from the token on is gone
	put(t, srv.URL, "r", `4`)
	c = openSSE(t, srv.URL+"/stream?record=r", token)
	c.Expect(t, "ready")
	c.Expect(t, "reset")
	if m := c.Expect(t, "snapshot").Decode(t); m["version"] != 4.0 {
		t.Fatalf("snapshot after reset: %v", m)
	}
	for _, bad := range []string{"garbage", "x-1", "-5"} {
		c = openSSE(t, srv.URL+"/stream?record=r", bad)
		c.Expect(t, "ready")
		c.Expect(t, "reset")
		c.Expect(t, "snapshot")
		c.Close()
	}
}

// TestStreamOutlivesRetention: a stream open for longer than the
// retention keeps its stored state: a subscription can be added to it,
// and it resumes with its identity and every subscription, from a point
// inside the retention.
func TestStreamOutlivesRetention(t *testing.T) {
	srv := startServer(t, map[string]string{"STREAM_RETENTION": "3s"}) // trims by age every 750ms
	c := openSSE(t, srv.URL+"/stream?record=r", "")
	id := c.Expect(t, "ready").Decode(t)["stream"].(string)
	c.Expect(t, "snapshot")
	time.Sleep(7 * time.Second) // many trims, the stream opened more than twice the retention ago
	addSubscription(t, srv.URL, id, `{"event":"e"}`)
	put(t, srv.URL, "r", `1`)
	c.Expect(t, "record")
	token := c.LastID
	c.Close()
	publishEvent(t, srv.URL, "e", `"missed"`)
	c = openSSE(t, srv.URL+"/stream?record=r", token)
	if got := c.Expect(t, "ready").Decode(t)["stream"]; got != id {
		t.Fatalf("resumed as stream %v, want %s", got, id)
	}
	if m := c.Expect(t, "event").Decode(t); m["data"] != "missed" {
		t.Fatalf("after the resume: %v, want the missed event", m)
	}
}

// A resume point that the size bound trimmed away gets a reset and fresh
// snapshots, as one that aged out does.
func TestResumeTooOldBySize(t *testing.T) {
	srv := startServer(t, map[string]string{"STREAM_RETENTION_BYTES": "200"})
	put(t, srv.URL, "r", `1`)
	c := openSSE(t, srv.URL+"/stream?record=r", "")
	c.Expect(t, "ready")
	c.Expect(t, "snapshot")
	put(t, srv.URL, "r", `2`)
	c.Expect(t, "record")
	token := c.LastID
	c.Close()
	for i := 3; i <= 6; i++ { // changes of 66 bytes: 4 to 6 fill the bound, 3 goes
		put(t, srv.URL, "r", strconv.Itoa(i))
	}
	time.Sleep(server.SizeTrimEvery + time.Second)
	c = openSSE(t, srv.URL+"/stream?record=r", token)
	c.Expect(t, "ready")
	c.Expect(t, "reset")
	if m := c.Expect(t, "snapshot").Decode(t); m["version"] != 6.0 {
		t.Fatalf("snapshot after reset: %v", m)
	}
}

// TestGracefulShutdown: on shutdown open streams end (so clients resume
// elsewhere), and server.Run returns nil.
func TestGracefulShutdown(t *testing.T) {
	srv := startServer(t, nil)
	c := openSSE(t, srv.URL+"/stream?event=x", "")
	c.Expect(t, "ready")
	stopped := make(chan struct{})
	go func() { srv.Stop(t); close(stopped) }()
	select {
	case _, ok := <-c.Frames():
		if ok {
			t.Fatal("got a frame instead of the end of the stream")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5s after shutdown began")
	}
	<-stopped
}

// TestTokenRequired: outside open mode a request without a token is 401.
func TestTokenRequired(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	for _, r := range [][2]string{{"GET", "/records/a"}, {"PUT", "/records/a"}, {"GET", "/stream"}, {"POST", "/events/a"}} {
		st, h, b := do(t, r[0], srv.URL+r[1], "application/json", `1`)
		if st != 401 || h.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(b), `"UNAUTHENTICATED"`) {
			t.Errorf("%s %s: %d %s", r[0], r[1], st, b)
		}
	}
	if st, _, _ := do(t, "GET", srv.URL+"/readyz", "", ""); st != 200 {
		t.Errorf("/readyz: %d", st)
	}
}

// TestStartPosition: the position of a new stream comes with the last
// frame of its start, so that a client cut off between the ready frame and
// the snapshots starts over instead of resuming without them.
func TestStartPosition(t *testing.T) {
	srv := startServer(t, nil)
	put(t, srv.URL, "p/a", `1`)
	put(t, srv.URL, "p/b", `1`)
	c := openSSE(t, srv.URL+"/stream?record=p/a&record=p/b&event=p/e", "")
	if f := c.Expect(t, "ready"); f.ID != "" {
		t.Fatalf("the ready frame carries id %q before the snapshots", f.ID)
	}
	if f := c.Expect(t, "snapshot"); f.ID != "" {
		t.Fatalf("the first snapshot carries id %q", f.ID)
	}
	last := c.Expect(t, "snapshot")
	if last.ID == "" {
		t.Fatal("the last snapshot carries no id")
	}
	c.Close()

	// Without record subscriptions, the ready frame is the start's last frame.
	c = openSSE(t, srv.URL+"/stream?event=p/e", "")
	if f := c.Expect(t, "ready"); f.ID == "" {
		t.Fatal("the ready frame of a stream without snapshots carries no id")
	}

	// Resumed from the last snapshot's id: no snapshot again, the next change.
	put(t, srv.URL, "p/b", `2`)
	c = openSSE(t, srv.URL+"/stream?record=p/a&record=p/b&event=p/e", last.ID)
	c.Expect(t, "ready")
	if m := c.Expect(t, "record").Decode(t); m["name"] != "p/b" || m["version"] != 2.0 {
		t.Fatalf("after resume: %v", m)
	}
}
