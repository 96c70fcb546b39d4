package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const revokeSecret = "server-revoke-test-secret-0123456789"

// revokeApp is a wired app over the embedded store in dir, served by
// httptest with its background loops running, as serve runs them.
type revokeApp struct {
	*app
	URL  string
	stop func()
}

func startRevokeApp(t *testing.T, dir string) *revokeApp {
	t.Helper()
	env := map[string]string{"AUTH_MODE": "token", "JWT_SECRET": revokeSecret, "DATA_DIR": dir}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	verifier, err := newVerifier(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	store, bus, err := openStore(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	login, err := newLogin(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	a := wire(cfg, store, bus, verifier, login, log, nil, nil)
	if err := a.revocations.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.hub.Run(ctx) })
	wg.Go(func() { a.revocations.Run(ctx) })
	srv := httptest.NewServer(a.handler)
	ra := &revokeApp{app: a, URL: srv.URL}
	var once sync.Once
	ra.stop = func() {
		once.Do(func() {
			a.hub.Drain()
			srv.CloseClientConnections()
			srv.Close()
			cancel()
			wg.Wait()
			if err := store.Close(); err != nil {
				t.Errorf("close the store: %v", err)
			}
		})
	}
	t.Cleanup(ra.stop)
	return ra
}

// signJTI signs an HS256 token for sub with the id jti, expiring in an hour.
func signJTI(t *testing.T, sub, jti string) (string, time.Time) {
	t.Helper()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "jti": jti, "exp": exp.Unix()}).
		SignedString([]byte(revokeSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s, exp
}

// call sends a request with token and returns the status and body.
func call(t *testing.T, method, target, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wantRevoked checks that a request with token is a 401 UNAUTHENTICATED
// problem that says the token was revoked.
func wantRevoked(t *testing.T, method, target, token, body string) {
	t.Helper()
	status, got := call(t, method, target, token, body)
	var p struct{ Code, Detail string }
	if status != http.StatusUnauthorized || json.Unmarshal([]byte(got), &p) != nil ||
		p.Code != "UNAUTHENTICATED" || !strings.Contains(p.Detail, "revoked") {
		t.Errorf("%s: %d %s, want 401 UNAUTHENTICATED, the token was revoked", method, status, got)
	}
}

// sseStream is an open stream: its frames' event names, closed at its end.
type sseStream struct {
	events <-chan string
	close  func()
}

// openStream opens GET target as an event stream with ?access_token=, as
// an EventSource would, and returns its status; the stream when 200.
func openStream(t *testing.T, target, token string) (int, *sseStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target+"&access_token="+url.QueryEscape(token), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return resp.StatusCode, nil
	}
	events := make(chan string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
	}()
	s := &sseStream{events: events, close: func() { cancel(); resp.Body.Close() }}
	t.Cleanup(s.close)
	return resp.StatusCode, s
}

// next returns the stream's next event name, or "closed" at its end.
func (s *sseStream) next(t *testing.T) string {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			return "closed"
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no frame and no end in 5s")
		return ""
	}
}

// TestRevokeEmbedded: over the embedded store, a token revoked by a
// logout is refused with 401 on every request (a second logout and a
// refresh included), its open stream ends and the reconnect is refused;
// another token of the same user goes on working; and after a restart on
// the same data directory the token is still refused.
func TestRevokeEmbedded(t *testing.T) {
	dir := t.TempDir()
	a := startRevokeApp(t, dir)
	revoked, _ := signJTI(t, "alice", "jti-revoked")
	other, _ := signJTI(t, "alice", "jti-other")

	if st, b := call(t, "PUT", a.URL+"/records/doc", revoked, `{"n":1}`); st != http.StatusCreated {
		t.Fatalf("PUT before the revocation: %d %s", st, b)
	}
	st, stream := openStream(t, a.URL+"/stream?record=doc", revoked)
	if st != http.StatusOK {
		t.Fatalf("stream before the revocation: %d", st)
	}
	_, otherStream := openStream(t, a.URL+"/stream?record=doc", other)
	for _, s := range []*sseStream{stream, otherStream} {
		if ev := s.next(t); ev != "ready" {
			t.Fatalf("first frame %q", ev)
		}
		if ev := s.next(t); ev != "snapshot" {
			t.Fatalf("second frame %q", ev)
		}
	}

	if st, b := call(t, "POST", a.URL+"/auth/logout", revoked, ""); st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, b)
	}
	for {
		ev := stream.next(t)
		if ev == "closed" {
			break
		}
		if ev != "record" { // a change already queued may still come
			t.Fatalf("the revoked token's stream got %q", ev)
		}
	}
	wantRevoked(t, "GET", a.URL+"/records/doc", revoked, "")
	wantRevoked(t, "PUT", a.URL+"/records/doc", revoked, `{"n":2}`)
	wantRevoked(t, "POST", a.URL+"/auth/refresh", revoked, "")
	wantRevoked(t, "POST", a.URL+"/auth/logout", revoked, "")
	if st, _ := openStream(t, a.URL+"/stream?record=doc", revoked); st != http.StatusUnauthorized {
		t.Errorf("the revoked token's reconnect: %d, want 401", st)
	}
	st, b := call(t, "GET", a.URL+"/records/doc", other, "")
	if st != http.StatusOK || !strings.Contains(b, `"version":1`) {
		t.Errorf("the other token: %d %s; want 200 and the record unchanged by the refused PUT", st, b)
	}
	if st, b := call(t, "PUT", a.URL+"/records/doc", other, `{"n":3}`); st != http.StatusOK {
		t.Errorf("PUT with the other token: %d %s", st, b)
	}
	if ev := otherStream.next(t); ev != "record" {
		t.Errorf("the other token's stream got %q, want the change", ev)
	}

	a.stop()
	a = startRevokeApp(t, dir)
	wantRevoked(t, "GET", a.URL+"/records/doc", revoked, "")
	if st, _ := openStream(t, a.URL+"/stream?record=doc", revoked); st != http.StatusUnauthorized {
		t.Errorf("after a restart, the revoked token's stream: %d, want 401", st)
	}
	if st, b := call(t, "GET", a.URL+"/records/doc", other, ""); st != http.StatusOK {
		t.Errorf("after a restart, the other token: %d %s", st, b)
	}
}
