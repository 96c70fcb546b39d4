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
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/api/client"
)

// gotFrames collects the frames of a Go client's stream.
type gotFrames struct {
	mu     sync.Mutex
	frames []client.Frame
	ended  chan struct{}
}

func collect(s *client.Stream) *gotFrames {
	g := &gotFrames{ended: make(chan struct{})}
	go func() {
		defer close(g.ended)
		for f := range s.Frames() {
			g.mu.Lock()
			g.frames = append(g.frames, f)
			g.mu.Unlock()
		}
	}()
	return g
}

func (g *gotFrames) all() []client.Frame {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]client.Frame(nil), g.frames...)
}

// wait polls until ok holds for the frames so far, failing the test after
// timeout.
func (g *gotFrames) wait(t testing.TB, what string, timeout time.Duration, ok func(fs []client.Frame) bool) []client.Frame {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		fs := g.all()
		if ok(fs) {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; frames:\n%s", what, timeout, dump(fs))
		}
	}
}

func dump(fs []client.Frame) string {
	s := ""
	for _, f := range fs {
		s += fmt.Sprintf("  %s %s %s\n", f.Event, f.ID, f.Data)
	}
	return s
}

// recordFrames returns the snapshot, record and delete frames of name at
// path ("" for the whole record).
func recordFrames(fs []client.Frame, name, path string) []client.RecordFrame {
	var out []client.RecordFrame
	for _, f := range fs {
		if r, err := f.AsRecord(); err == nil && r.Name == name && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func versionsOf(rs []client.RecordFrame) []int64 {
	var v []int64
	for _, r := range rs {
		v = append(v, r.Version)
	}
	return v
}

// eventData returns the data of the event frames named name.
func eventData(fs []client.Frame, name string) []string {
	var out []string
	for _, f := range fs {
		if e, err := f.AsEvent(); err == nil && e.Name == name {
			out = append(out, string(e.Data))
		}
	}
	return out
}

func framesOf(fs []client.Frame, event string) []client.Frame {
	var out []client.Frame
	for _, f := range fs {
		if f.Event == event {
			out = append(out, f)
		}
	}
	return out
}

func hasFrame(fs []client.Frame, event, data string) bool {
	for _, f := range fs {
		if f.Event == event && string(f.Data) == data {
			return true
		}
	}
	return false
}

// TestGoClientStreamSubscriptions: one Go client stream with every kind
// of subscription (record, path, collection, events, presence, listen)
// gets its snapshots and then each change once; subscriptions added and
// removed on the open stream take effect; a refused one is an error and
// changes nothing.
func TestGoClientStreamSubscriptions(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret, "LEAVE_GRACE": "100ms"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := client.NewClient(srv.URL, client.WithToken(signToken(t, "alice", time.Hour)))
	bob := client.NewClient(srv.URL, client.WithToken(signToken(t, "bob", time.Hour)))
	mustPut := func(name string, data any) {
		t.Helper()
		if _, err := alice.Put(ctx, name, data, client.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	mustPut("d/1", map[string]any{"name": "a", "position": map[string]any{"x": 1}})
	mustPut("d/2", "two")
	mustPut("solo", "alone")

	s, err := alice.Stream(ctx, client.RecordSub("d/1"), client.PathSub("d/1", "position.x"),
		client.CollectionSub("d/"), client.EventSub("chat/*"), client.EventSub("chat/*"), client.PresenceSub("*"), client.ListenSub("prices/"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Add(ctx, client.EventSub("chat/lobby")); err != nil { // overlaps chat/*
		t.Fatal(err)
	}
	g := collect(s)
	g.wait(t, "the snapshots, synced and alice's presence", 5*time.Second, func(fs []client.Frame) bool {
		return len(recordFrames(fs, "d/1", "position.x")) == 1 && len(recordFrames(fs, "d/2", "")) == 1 &&
			len(framesOf(fs, "synced")) == 1 && hasFrame(fs, "presence", `{"user":"alice","online":true}`)
	})
	if fs := g.all(); fs[0].Event != "ready" {
		t.Errorf("first frame %s, want ready", fs[0].Event)
	}
	if r := recordFrames(g.all(), "d/1", "position.x"); string(r[0].Data) != "1" || r[0].Op != "snapshot" {
		t.Errorf("path snapshot %+v", r[0])
	}

	// bob subscribes to a name under alice's listen prefix, and comes online.
	bs, err := bob.Stream(ctx, client.RecordSub("prices/eur"))
	if err != nil {
		t.Fatal(err)
	}
	g.wait(t, "bob online and demand for prices/eur", 5*time.Second, func(fs []client.Frame) bool {
		return hasFrame(fs, "presence", `{"user":"bob","online":true}`) &&
			hasFrame(fs, "listen", `{"kind":"record","name":"prices/eur","active":true}`)
	})

	if _, err := alice.PutPath(ctx, "d/1", "position.x", 2, client.Cond{}); err != nil { // v2
		t.Fatal(err)
	}
	if _, err := alice.PutPath(ctx, "d/1", "name", "b", client.Cond{}); err != nil { // v3: position.x unchanged
		t.Fatal(err)
	}
	mustPut("d/3", "three")
	id, err := alice.Emit(ctx, "chat/lobby", "hi")
	if err != nil {
		t.Fatal(err)
	}
	fs := g.wait(t, "the changes and the event", 5*time.Second, func(fs []client.Frame) bool {
		return len(eventData(fs, "chat/lobby")) == 1 && len(recordFrames(fs, "d/3", "")) == 1
	})
	if v := versionsOf(recordFrames(fs, "d/1", "")); !reflect.DeepEqual(v, []int64{1, 2, 3}) {
		t.Errorf("d/1 versions %v, want [1 2 3] (each once, for the record and the collection)", v)
	}
	if v := versionsOf(recordFrames(fs, "d/1", "position.x")); !reflect.DeepEqual(v, []int64{1, 2}) {
		t.Errorf("d/1 position.x versions %v, want [1 2]", v)
	}
	if r := recordFrames(fs, "d/3", ""); r[0].Op != "set" || string(r[0].Data) != `"three"` {
		t.Errorf("d/3 created under the collection: %+v", r[0])
	}
	for _, f := range framesOf(fs, "event") {
		e, _ := f.AsEvent()
		if e.ID != id || e.Publisher == nil || *e.Publisher != "alice" || f.ID == "" {
			t.Errorf("event frame %+v (frame id %q), want id %s from alice", e, f.ID, id)
		}
	}

	// Dynamic subscriptions.
	if err := s.Remove(ctx, client.EventSub("chat/*"), client.EventSub("chat/lobby")); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, client.RecordSub("solo"), client.EventSub("ctl")); err != nil {
		t.Fatal(err)
	}
	g.wait(t, "the added record's snapshot", 5*time.Second, func(fs []client.Frame) bool {
		return len(recordFrames(fs, "solo", "")) == 1
	})
	alice.Emit(ctx, "chat/lobby", "after removal")
	alice.Emit(ctx, "ctl", "mark")
	fs = g.wait(t, "the ctl event", 5*time.Second, func(fs []client.Frame) bool { return len(eventData(fs, "ctl")) == 1 })
	if got := eventData(fs, "chat/lobby"); !reflect.DeepEqual(got, []string{`"hi"`}) {
		t.Errorf("chat/lobby events %v: one came after its subscription was removed", got)
	}
	err = s.Add(ctx, client.RecordSub("bad//name"))
	var e *client.Error
	if !errorAs(err, &e) || e.Status != http.StatusBadRequest || e.Code != api.CodeInvalidName {
		t.Errorf("adding a bad name: %v, want 400 INVALID_NAME", err)
	}
	want := []client.Subscription{client.RecordSub("d/1"), client.PathSub("d/1", "position.x"), client.CollectionSub("d/"),
		client.PresenceSub("*"), client.ListenSub("prices/"), client.RecordSub("solo"), client.EventSub("ctl")}
	if got := s.Subscriptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("subscriptions %+v, want %+v", got, want)
	}

	// bob leaves: his presence and his demand end.
	bs.Close()
	g.wait(t, "bob offline and no demand for prices/eur", 5*time.Second, func(fs []client.Frame) bool {
		return hasFrame(fs, "presence", `{"user":"bob","online":false}`) &&
			hasFrame(fs, "listen", `{"kind":"record","name":"prices/eur","active":false}`)
	})
	if n := len(framesOf(g.all(), "ready")); n != 1 {
		t.Errorf("%d ready frames: the stream reconnected", n)
	}
	s.Close()
	<-g.ended
	if s.Err() != nil {
		t.Errorf("Err after Close: %v", s.Err())
	}
}

func errorAs(err error, e **client.Error) bool { return errors.As(err, e) }

// TestGoClientStreamRefused: a stream the server refuses is Stream's
// error, at once: a bad name or path (400), no token in token mode (401),
// a token that the refresher's replacement does not fix (401).
func TestGoClientStreamRefused(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.NewClient(srv.URL, client.WithToken(signToken(t, "alice", time.Hour)))
	var e *client.Error
	if _, err := c.Stream(ctx, client.RecordSub("/bad")); !errorAs(err, &e) || e.Code != api.CodeInvalidName {
		t.Errorf("a bad name: %v, want 400 INVALID_NAME", err)
	}
	if _, err := c.Stream(ctx, client.PathSub("doc", "a[")); !errorAs(err, &e) || e.Code != api.CodeInvalidPath {
		t.Errorf("a bad path: %v, want 400 INVALID_PATH", err)
	}
	anon := client.NewClient(srv.URL)
	if _, err := anon.Stream(ctx, client.RecordSub("doc")); !errorAs(err, &e) || e.Status != http.StatusUnauthorized {
		t.Errorf("no token: %v, want 401", err)
	}
	// A refresher whose token is refused too is asked once, not forever.
	var asked atomic.Int32
	bad := client.NewClient(srv.URL, client.WithToken("expired"), client.WithTokenRefresher(func(context.Context) (string, error) {
		asked.Add(1)
		return "still-bad", nil
	}))
	if _, err := bad.Stream(ctx, client.RecordSub("doc")); !errorAs(err, &e) || e.Status != http.StatusUnauthorized {
		t.Errorf("a refused refreshed token: %v, want 401", err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the refresher was asked %d times, want once", n)
	}
	// A request that meets 401 is sent again with the refresher's token.
	good := client.NewClient(srv.URL, client.WithToken("expired"), client.WithTokenRefresher(func(context.Context) (string, error) {
		return signToken(t, "alice", time.Hour), nil
	}))
	if _, err := good.Put(ctx, "doc", "renewed", client.Cond{}); err != nil {
		t.Errorf("a write with a refresher: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("a refusal was tried again until the context ended")
	}
}

// switchProxy is a reverse proxy in front of a server that can be pointed
// elsewhere; while its target is down it answers 502, as a platform's
// proxy does during a deploy.
type switchProxy struct {
	*httptest.Server
	target atomic.Pointer[url.URL]
	bad    atomic.Int64 // 502 answers
}

func newSwitchProxy(t testing.TB, target string) *switchProxy {
	p := &switchProxy{}
	p.point(target)
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(p.target.Load()); r.Out.Host = r.In.Host },
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			p.bad.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.Server = httptest.NewServer(rp)
	t.Cleanup(p.CloseClientConnections)
	t.Cleanup(p.Close)
	return p
}

func (p *switchProxy) point(target string) {
	u, _ := url.Parse(target)
	p.target.Store(u)
}

// TestGoClientStreamSurvivesRestart: eight Go client streams behind a
// proxy survive a server restart: while the server is down the proxy
// answers 502 and the streams back off and try again; the writes and
// events made before they are back come with their resume, and no change
// or event is lost or doubled. Every frame after the first ready is a
// resumed one (no snapshot again).
func TestGoClientStreamSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, map[string]string{"DATA_DIR": dir, "STREAM_RETRY": "100ms"})
	proxy := newSwitchProxy(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.NewClient(proxy.URL)
	put(t, srv.URL, "doc", `{"x":1}`)
	put(t, srv.URL, "coll/a", `1`)

	const n = 8
	streams := make([]*client.Stream, n)
	got := make([]*gotFrames, n)
	for i := range streams {
		s, err := c.Stream(ctx, client.RecordSub("doc"), client.PathSub("doc", "x"), client.CollectionSub("coll/"), client.EventSub("ev/*"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams[i], got[i] = s, collect(s)
	}
	if _, err := c.PutPath(ctx, "doc", "x", 2, client.Cond{}); err != nil { // v2, live
		t.Fatal(err)
	}
	publishEvent(t, srv.URL, "ev/1", `"live"`)
	for i := range got {
		got[i].wait(t, "version 2 and the live event", 5*time.Second, func(fs []client.Frame) bool {
			return len(recordFrames(fs, "doc", "x")) == 2 && len(eventData(fs, "ev/1")) == 1
		})
	}

	srv.Stop(t)
	proxy.point("http://127.0.0.1:1") // nothing listens: 502
	for deadline := time.Now().Add(10 * time.Second); proxy.bad.Load() < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if proxy.bad.Load() < n {
		t.Fatalf("the streams met %d 502s while the server was down, want at least %d", proxy.bad.Load(), n)
	}
	srv = startServer(t, map[string]string{"DATA_DIR": dir, "STREAM_RETRY": "100ms"})
	put(t, srv.URL, "doc", `{"x":3}`) // v3, made while the streams were away
	put(t, srv.URL, "coll/b", `2`)
	publishEvent(t, srv.URL, "ev/2", `"while away"`)
	proxy.point(srv.URL)

	for i := range got {
		got[i].wait(t, "the changes made while away", 20*time.Second, func(fs []client.Frame) bool {
			return len(recordFrames(fs, "doc", "")) >= 3 && len(eventData(fs, "ev/2")) >= 1 && len(recordFrames(fs, "coll/b", "")) >= 1
		})
	}
	if _, err := c.PutPath(ctx, "doc", "x", 4, client.Cond{}); err != nil { // v4, live again
		t.Fatal(err)
	}
	publishEvent(t, srv.URL, "ev/3", `"live again"`)
	for i, g := range got {
		fs := g.wait(t, "version 4", 5*time.Second, func(fs []client.Frame) bool {
			return len(recordFrames(fs, "doc", "")) >= 4 && len(eventData(fs, "ev/3")) >= 1
		})
		time.Sleep(50 * time.Millisecond)
		fs = g.all()
		if v := versionsOf(recordFrames(fs, "doc", "")); !reflect.DeepEqual(v, []int64{1, 2, 3, 4}) {
			t.Errorf("stream %d: doc versions %v, want [1 2 3 4]", i, v)
		}
		if v := versionsOf(recordFrames(fs, "doc", "x")); !reflect.DeepEqual(v, []int64{1, 2, 3, 4}) {
			t.Errorf("stream %d: doc x versions %v, want [1 2 3 4]", i, v)
		}
		if r := recordFrames(fs, "doc", ""); r[2].Op != "set" {
			t.Errorf("stream %d: version 3 came as %q, want a resumed set", i, r[2].Op)
		}
		if v := versionsOf(recordFrames(fs, "coll/b", "")); !reflect.DeepEqual(v, []int64{1}) {
			t.Errorf("stream %d: coll/b versions %v, want [1]", i, v)
		}
		for _, ev := range []string{"ev/1", "ev/2", "ev/3"} {
			if d := eventData(fs, ev); len(d) != 1 {
				t.Errorf("stream %d: %s came %d times, want once", i, ev, len(d))
			}
		}
		if n := len(framesOf(fs, "ready")); n < 2 {
			t.Errorf("stream %d: %d ready frames, want a reconnection", i, n)
		}
		if n := len(framesOf(fs, "snapshot")); n != 3 {
			t.Errorf("stream %d: %d snapshots, want the first three only:\n%s", i, n, dump(fs))
		}
		if streams[i].Err() != nil {
			t.Errorf("stream %d ended: %v", i, streams[i].Err())
		}
	}
	t.Logf("the proxy answered 502 %d times", proxy.bad.Load())
}

// TestGoClientStreamServerEnds: with a stream lifetime of one second the
// server ends every stream again and again (a clean close); four Go
// client streams come back each time with their last id, while a writer
// writes, and each delivers every version and event exactly once, in
// order.
func TestGoClientStreamServerEnds(t *testing.T) {
	srv := startServer(t, map[string]string{"STREAM_MAX_LIFETIME": "1s", "STREAM_RETRY": "50ms"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.NewClient(srv.URL)
	const n = 4
	streams := make([]*client.Stream, n)
	got := make([]*gotFrames, n)
	for i := range streams {
		s, err := c.Stream(ctx, client.RecordSub("k"), client.EventSub("tick"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		streams[i], got[i] = s, collect(s)
	}
	var writes int64
	var events []string
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		r, err := c.Put(ctx, "k", writes+1, client.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		writes = r.Version
		if writes%3 == 0 {
			if _, err := c.Emit(ctx, "tick", writes); err != nil {
				t.Fatal(err)
			}
			events = append(events, strconv.FormatInt(writes, 10))
		}
	}
	want := make([]int64, 0, writes+1)
	for v := range writes + 1 {
		want = append(want, v) // the snapshot of the absent record is version 0
	}
	for i, g := range got {
		fs := g.wait(t, "every version", 20*time.Second, func(fs []client.Frame) bool {
			r := recordFrames(fs, "k", "")
			return len(r) > 0 && r[len(r)-1].Version == writes
		})
		if v := versionsOf(recordFrames(fs, "k", "")); !reflect.DeepEqual(v, want) {
			t.Errorf("stream %d: versions %v, want 0..%d once each", i, v, writes)
		}
		g.wait(t, "every event", 10*time.Second, func(fs []client.Frame) bool { return len(eventData(fs, "tick")) >= len(events) })
		time.Sleep(50 * time.Millisecond)
		if d := eventData(g.all(), "tick"); !reflect.DeepEqual(d, events) {
			t.Errorf("stream %d: events %v, want %v", i, d, events)
		}
		if r := len(framesOf(g.all(), "ready")); r < 3 {
			t.Errorf("stream %d: %d ready frames in 4 s with a 1 s lifetime", i, r)
		}
	}
	t.Logf("%d versions, %d events", writes, len(events))
}

// TestGoClientLogin: Login through the auth webhook keeps the token, which
// the client then sends; Refresh replaces it; Logout revokes it (the
// stream opened with it ends with 401) and the client sends none. A
// refused login is 401 UNAUTHENTICATED.
func TestGoClientLogin(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"ada","clientData":{"theme":"dark"},"serverData":{"role":"admin"}}`))
	srv := startServer(t, loginEnv(hook.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client.NewClient(srv.URL)
	var e *client.Error
	if _, err := c.Get(ctx, "doc"); !errorAs(err, &e) || e.Status != http.StatusUnauthorized {
		t.Fatalf("before login: %v, want 401", err)
	}
	tok, err := c.Login(ctx, map[string]string{"user": "ada", "password": "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID != "ada" || string(tok.ClientData) != `{"theme":"dark"}` || time.Until(tok.ExpiresAt) < 50*time.Minute {
		t.Errorf("login answer %+v", tok)
	}
	if auth, _ := hook.lastRequest()["authData"].(map[string]any); auth["user"] != "ada" {
		t.Errorf("the webhook got %v", hook.lastRequest())
	}
	if _, err := c.Put(ctx, "doc", "mine", client.Cond{}); err != nil {
		t.Fatalf("a write after login: %v", err)
	}
	fresh, err := c.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Token == tok.Token || fresh.ID != "ada" {
		t.Errorf("refresh answered %+v", fresh)
	}
	if _, err := c.Get(ctx, "doc"); err != nil {
		t.Fatalf("a read after refresh: %v", err)
	}
	s, err := c.Stream(ctx, client.RecordSub("doc"))
	if err != nil {
		t.Fatal(err)
	}
	g := collect(s)
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	// The server ends the stream of the revoked token; its reconnect meets
	// 401, and with no refresher the stream ends with it.
	select {
	case <-g.ended:
		if !errorAs(s.Err(), &e) || e.Status != http.StatusUnauthorized {
			t.Errorf("the stream ended with %v, want 401", s.Err())
		}
	case <-time.After(10 * time.Second):
		t.Error("the stream of a revoked token did not end")
	}
	if _, err := c.Get(ctx, "doc"); !errorAs(err, &e) || e.Status != http.StatusUnauthorized {
		t.Errorf("after logout: %v, want 401", err)
	}
	// The revoked token is refused even when sent again.
	old := client.NewClient(srv.URL, client.WithToken(fresh.Token))
	if _, err := old.Get(ctx, "doc"); !errorAs(err, &e) || e.Status != http.StatusUnauthorized {
		t.Errorf("the logged out token: %v, want 401", err)
	}
	hook.set(hookJSON(403, `{}`))
	if _, err := c.Login(ctx, "wrong"); !errorAs(err, &e) || e.Code != api.CodeUnauthenticated {
		t.Errorf("a refused login: %v, want 401 UNAUTHENTICATED", err)
	}
}

// TestGoClientStreamTokenRenewal: tokens live 3 s. A client with
// WithAutoRefresh refreshes before expiry, and its stream, ended by the
// server at each old token's expiry, resumes with the new token; a client
// with WithTokenRefresher logs in again when its reconnect meets 401.
// Both streams deliver every version once, across ten seconds.
func TestGoClientStreamTokenRenewal(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"ada"}`))
	srv := startServer(t, loginEnv(hook.URL, "JWT_TTL", "3s", "STREAM_RETRY", "50ms"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	auto := client.NewClient(srv.URL, client.WithAutoRefresh(1500*time.Millisecond))
	first, err := auto.Login(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	var relogins atomic.Int32
	var again *client.Client
	again = client.NewClient(srv.URL, client.WithTokenRefresher(func(ctx context.Context) (string, error) {
		relogins.Add(1)
		tok, err := again.Login(ctx, "ada")
		return tok.Token, err
	}))
	if _, err := again.Login(ctx, "ada"); err != nil {
		t.Fatal(err)
	}
	sa, err := auto.Stream(ctx, client.RecordSub("doc"))
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	sb, err := again.Stream(ctx, client.RecordSub("doc"))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ga, gb := collect(sa), collect(sb)
	var last int64
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		r, err := auto.Put(ctx, "doc", last+1, client.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		last = r.Version
	}
	want := make([]int64, 0, last+1)
	for v := range last + 1 {
		want = append(want, v)
	}
	for name, g := range map[string]*gotFrames{"auto refresh": ga, "refresher": gb} {
		fs := g.wait(t, name+": every version", 20*time.Second, func(fs []client.Frame) bool {
			r := recordFrames(fs, "doc", "")
			return len(r) > 0 && r[len(r)-1].Version == last
		})
		if v := versionsOf(recordFrames(fs, "doc", "")); !reflect.DeepEqual(v, want) {
			t.Errorf("%s: versions %v, want 0..%d once each", name, v, last)
		}
		if r := len(framesOf(fs, "ready")); r < 2 {
			t.Errorf("%s: %d ready frames: the stream was never ended by its token's expiry", name, r)
		}
	}
	if sa.Err() != nil || sb.Err() != nil {
		t.Errorf("a stream ended: %v, %v", sa.Err(), sb.Err())
	}
	if relogins.Load() == 0 {
		t.Error("the refresher was never called")
	}
	if n := hook.calls.Load(); n < 3 {
		t.Errorf("the webhook was called %d times", n)
	}
	_ = first
	var payload json.RawMessage
	if r, err := auto.Get(ctx, "doc"); err != nil || r.Decode(&payload) != nil {
		t.Errorf("auto refresh client after 10 s: %v", err)
	}
	t.Logf("%d versions, %d relogins", last, relogins.Load())
}

// TestGoClientStreamConcurrentChanges: sixteen goroutines add and remove
// subscriptions of one stream at once, and write their records: each
// record's snapshot and changes come once, and a removed record's changes
// stop.
func TestGoClientStreamConcurrentChanges(t *testing.T) {
	srv := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.NewClient(srv.URL)
	s, err := c.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g := collect(s)
	const n = 16
	name := func(i int) string { return "r/" + strconv.Itoa(i) }
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := c.Put(ctx, name(i), 1, client.Cond{}); err != nil {
				t.Error(err)
				return
			}
			if err := s.Add(ctx, client.RecordSub(name(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	g.wait(t, "every snapshot", 5*time.Second, func(fs []client.Frame) bool { return len(framesOf(fs, "snapshot")) >= n })
	for i := range n {
		wg.Go(func() {
			if _, err := c.Put(ctx, name(i), 2, client.Cond{}); err != nil {
				t.Error(err)
			}
			if i%2 == 1 {
				if err := s.Remove(ctx, client.RecordSub(name(i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// A subscription added after the removals: once its snapshot is here,
	// the stream has taken them.
	put(t, srv.URL, "marker", `1`)
	if err := s.Add(ctx, client.RecordSub("marker")); err != nil {
		t.Fatal(err)
	}
	g.wait(t, "the marker's snapshot", 5*time.Second, func(fs []client.Frame) bool { return len(recordFrames(fs, "marker", "")) == 1 })
	for i := range n {
		wg.Go(func() {
			if _, err := c.Put(ctx, name(i), 3, client.Cond{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := c.Put(ctx, "marker", 2, client.Cond{}); err != nil {
		t.Fatal(err)
	}
	fs := g.wait(t, "the marker's change", 5*time.Second, func(fs []client.Frame) bool { return len(recordFrames(fs, "marker", "")) == 2 })
	for i := range n {
		v := versionsOf(recordFrames(fs, name(i), ""))
		switch {
		case i%2 == 0 && !reflect.DeepEqual(v, []int64{1, 2, 3}):
			t.Errorf("%s: versions %v, want [1 2 3]", name(i), v)
		// Version 2 was written before the removal was asked for, but
		// nothing orders the two on the stream.
		case i%2 == 1 && !reflect.DeepEqual(v, []int64{1, 2}) && !reflect.DeepEqual(v, []int64{1}):
			t.Errorf("%s: versions %v, want [1 2] (or [1]) after its removal", name(i), v)
		}
	}
	if got := len(s.Subscriptions()); got != n/2+1 {
		t.Errorf("%d subscriptions, want %d", got, n/2+1)
	}
}
