package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/auth"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/handlers"
	"github.com/switchboard-dev/switchboard/realtime"
)

// options are what the tests vary of a server.
type options struct {
	maxBody     int64                // MAX_BODY_BYTES; 1 MiB when 0
	bodyTimeout time.Duration        // BODY_TIMEOUT; 10s when 0
	token       bool                 // AUTH_MODE=token rather than open
	deps        func(*handlers.Deps) // changes the Deps before the routes are made
}

// testSecret is the JWT_SECRET of newServer's verifier.
var testSecret = []byte("handlers-test-secret-of-32-bytes")

// newServer serves handlers.Routes on httptest wired as the server wires
// it: over the embedded store in t's temporary directory, with the hub and
// the RPC service running and handlers.Listener around the listener. It
// returns the server and its Deps; everything stops when t ends.
func newServer(t testing.TB, o options) (*httptest.Server, handlers.Deps) {
	t.Helper()
	if o.maxBody == 0 {
		o.maxBody = 1 << 20
	}
	if o.bodyTimeout == 0 {
		o.bodyTimeout = 10 * time.Second
	}
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.DiscardHandler)
	bus := store.Bus()
	var access realtime.Access = realtime.AllowAll{}
	hub := realtime.NewHub(store, bus, access, realtime.HubConfig{
		Heartbeat: 15 * time.Second, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 4 << 20, MaxSubscriptions: 100,
	}, log)
	rpc := realtime.NewRPC(embedded.NewRPCQueue(bus), bus, access, realtime.RPCConfig{AckTimeout: 5 * time.Second, MaxAttempts: 3}, log)
	d := handlers.Deps{
		Store:    store,
		Bus:      bus,
		Records:  realtime.NewRecords(store, access, 1<<20),
		Events:   realtime.NewEvents(store, access),
		Hub:      hub,
		RPC:      rpc,
		Metrics:  handlers.NewMetrics(&hub.Stats),
		Log:      log,
		OpenAPI:  []byte("openapi: 3.0.3\n"),
		OpenMode: !o.token,
		Bodies:   handlers.NewBodies(o.maxBody, o.bodyTimeout),
	}
	ctx, cancel := context.WithCancel(context.Background())
	v, err := auth.New(ctx, auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	d.Verifier = v
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hub.Run(ctx); err != nil {
			t.Errorf("hub: %v", err)
		}
	})
	wg.Go(func() { rpc.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	if o.deps != nil {
		o.deps(&d)
	}
	srv := httptest.NewUnstartedServer(handlers.Routes(d))
	srv.Listener = handlers.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, d
}

// send sends a request with an optional body and header pairs, and returns
// the response (its body read) and the body.
func send(t *testing.T, method, url, contentType, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the body: %v", method, url, err)
	}
	return resp, b
}

// problem is the part of a problem+json body that the tests check.
type problem struct {
	Status         int
	Code           string
	Detail         string
	Parameter      string
	CurrentVersion *int64
}

// problemOf decodes a problem+json answer, or says why it is none.
func problemOf(resp *http.Response, body []byte) (problem, bool) {
	var p problem
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != resp.StatusCode || p.Detail == "" {
		return p, false
	}
	return p, true
}

// wantProblem checks that an answer is the problem status code.
func wantProblem(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) problem {
	t.Helper()
	p, ok := problemOf(resp, body)
	if !ok || resp.StatusCode != status || p.Code != code {
		t.Errorf("%s: %d %s %s, want %d problem+json %s", what, resp.StatusCode, resp.Header.Get("Content-Type"), body, status, code)
	}
	return p
}

// TestMethodNotAllowedEveryRoute: on every route of routes.go, each method
// that it does not serve is 405 METHOD_NOT_ALLOWED, with the methods that
// it serves in Allow (HEAD only where a route has it: /records/{name}).
func TestMethodNotAllowedEveryRoute(t *testing.T) {
	srv, _ := newServer(t, options{})
	routes := []struct{ path, allow string }{
		{"/healthz", "GET"},
		{"/readyz", "GET"},
		{"/metrics", "GET"},
		{"/openapi.yaml", "GET"},
		{"/records", "GET"},
		{"/records/a/b", "GET, HEAD, PUT, PATCH, DELETE"},
		{"/batch", "POST"},
		{"/events/a/b", "POST"},
		{"/stream", "GET"},
		{"/stream/s/subscriptions", "POST, DELETE"},
		{"/rpc/add", "POST"},
		{"/rpc-requests", "GET"},
		{"/rpc-requests/id", "POST"},
		{"/auth/login", "POST"},
		{"/auth/refresh", "POST"},
		{"/auth/logout", "POST"},
	}
	for _, r := range routes {
		for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			if strings.Contains(r.allow, method) {
				continue
			}
			resp, body := send(t, method, srv.URL+r.path, "", "")
			what := method + " " + r.path
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != r.allow {
				t.Errorf("%s: %d Allow %q, want 405 Allow %q", what, resp.StatusCode, resp.Header.Get("Allow"), r.allow)
			}
			if method != "HEAD" { // a HEAD answer has no body to check
				wantProblem(t, what, resp, body, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
			}
		}
	}
}

// TestNotFound: a path that no route serves is 404 NOT_FOUND, whatever
// the method.
func TestNotFound(t *testing.T) {
	srv, _ := newServer(t, options{})
	for _, target := range []string{"/", "/nope", "/record/a", "/healthz/a", "/stream/s", "/stream/s/subscriptions/x", "/rpc-requests/a/b"} {
		for _, method := range []string{"GET", "POST"} {
			resp, body := send(t, method, srv.URL+target, "", "")
			p := wantProblem(t, method+" "+target, resp, body, http.StatusNotFound, "NOT_FOUND")
			if !strings.Contains(p.Detail, target) {
				t.Errorf("%s %s: detail %q does not name the path", method, target, p.Detail)
			}
		}
	}
}

// TestQueryChecked: a query string that does not parse is 400
// INVALID_PARAMETER on every route, before its handler, naming the
// parameter; so is a value that a handler refuses.
func TestQueryChecked(t *testing.T) {
	srv, _ := newServer(t, options{})
	for _, c := range []struct{ method, target, param string }{
		{"GET", "/healthz?x=%zz", "x"},
		{"GET", "/records/a?path=%zz", "path"},
		{"PUT", "/records/a?path=a;b=1", "path"},
		{"DELETE", "/records/a?p%zz=1", "p%zz"},
		{"POST", "/events/a?x=%", "x"},
		{"GET", "/records?limit=0", "limit"},
		{"GET", "/records?limit=ten", "limit"},
	} {
		resp, body := send(t, c.method, srv.URL+c.target, "application/json", "1")
		if p := wantProblem(t, c.method+" "+c.target, resp, body, http.StatusBadRequest, "INVALID_PARAMETER"); p.Parameter != c.param {
			t.Errorf("%s %s: parameter %q, want %q", c.method, c.target, p.Parameter, c.param)
		}
	}
	if resp, body := send(t, "GET", srv.URL+"/records/a", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after: GET /records/a: %d %s (a refused write was written)", resp.StatusCode, body)
	}
}

// TestOperationsNeedNoToken: outside open mode the operations routes
// still answer without a token; the API routes want one.
func TestOperationsNeedNoToken(t *testing.T) {
	srv, _ := newServer(t, options{token: true})
	for _, target := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		if resp, body := send(t, "GET", srv.URL+target, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s", target, resp.StatusCode, body)
		}
	}
	for _, target := range []string{"/records", "/records/a", "/rpc-requests?name=a"} {
		resp, body := send(t, "GET", srv.URL+target, "", "")
		wantProblem(t, "GET "+target, resp, body, http.StatusUnauthorized, "UNAUTHENTICATED")
	}
}
