package handlers_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/handlers"
)

// corsServer serves the routes with CORS_ORIGINS=origins.
func corsServer(t *testing.T, origins string) string {
	t.Helper()
	o, err := handlers.ParseOrigins(origins)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := newServer(t, options{deps: func(d *handlers.Deps) { d.Origins = o }})
	return srv.URL
}

// TestCORS: what each request gets with each CORS_ORIGINS. A listed
// origin gets its own origin back with credentials, on preflights, on
// answers and on errors; "*" gets "*" and never credentials; an origin
// not listed, or a server without CORS_ORIGINS, gets no CORS header at
// all; a preflight is never 404 or 405.
func TestCORS(t *testing.T) {
	const app, evil = "https://app.example", "https://evil.example"
	preflight := func(origin, method, headers string) []string {
		h := []string{"Origin", origin, "Access-Control-Request-Method", method}
		if headers != "" {
			h = append(h, "Access-Control-Request-Headers", headers)
		}
		return h
	}
	type want struct {
		status               int
		origin, credentials  string // Access-Control-Allow-Origin and -Credentials
		methods, allowHeader string // of a preflight
		expose               string
	}
	none := func(status int) want { return want{status: status} }
	for _, c := range []struct {
		name, origins, method, path string
		headers                     []string
		want                        want
	}{
		{"preflight PUT with its headers", app, "OPTIONS", "/records/doc",
			preflight(app, "PUT", "authorization,content-type,if-match,if-none-match"),
			want{status: 204, origin: app, credentials: "true", methods: "PUT", allowHeader: "authorization,content-type,if-match,if-none-match"}},
		{"preflight with headers as a person writes them", app, "OPTIONS", "/records/doc",
			preflight(app, "PUT", "Content-Type, Authorization, If-Match,content-type"),
			want{status: 204, origin: app, credentials: "true", methods: "PUT", allowHeader: "authorization,content-type,if-match"}},
		{"preflight with its headers in two fields", app, "OPTIONS", "/records/doc",
			append(preflight(app, "PUT", "If-None-Match"), "Access-Control-Request-Headers", "Authorization"),
			want{status: 204, origin: app, credentials: "true", methods: "PUT", allowHeader: "authorization,if-none-match"}},
		{"preflight with a header not allowed among others", app, "OPTIONS", "/records/doc",
			preflight(app, "PUT", "Content-Type, X-Custom"), none(204)},
		{"preflight GET /stream with Last-Event-ID", app, "OPTIONS", "/stream",
			preflight(app, "GET", "last-event-id"),
			want{status: 204, origin: app, credentials: "true", methods: "GET", allowHeader: "last-event-id"}},
		{"preflight of the second listed origin", app + ",http://localhost:3000", "OPTIONS", "/batch",
			preflight("http://localhost:3000", "POST", "content-type"),
			want{status: 204, origin: "http://localhost:3000", credentials: "true", methods: "POST", allowHeader: "content-type"}},
		{"preflight PATCH and DELETE", app, "OPTIONS", "/records/doc", preflight(app, "PATCH", ""),
			want{status: 204, origin: app, credentials: "true", methods: "PATCH"}},
		{"preflight of a route that does not exist", app, "OPTIONS", "/nowhere", preflight(app, "GET", ""),
			want{status: 204, origin: app, credentials: "true", methods: "GET"}},
		{"preflight from an origin not listed", app, "OPTIONS", "/records/doc", preflight(evil, "PUT", "content-type"), none(204)},
		{"preflight of a header not allowed", app, "OPTIONS", "/records/doc", preflight(app, "PUT", "x-custom"), none(204)},
		{"preflight of a method not allowed", app, "OPTIONS", "/records/doc", preflight(app, "CONNECT", ""), none(204)},
		{"preflight with *", "*", "OPTIONS", "/records/doc", preflight(evil, "PUT", "authorization,content-type"),
			want{status: 204, origin: "*", methods: "PUT", allowHeader: "authorization,content-type"}},
		{"preflight without CORS_ORIGINS", "", "OPTIONS", "/records/doc", preflight(app, "PUT", ""), none(405)},

		{"GET from a listed origin", app, "GET", "/records/missing", []string{"Origin", app},
			want{status: 404, origin: app, credentials: "true", expose: "ETag, Location, Retry-After, X-Request-Id"}},
		{"an error from a listed origin", app, "GET", "/records?limit=abc", []string{"Origin", app},
			want{status: 400, origin: app, credentials: "true", expose: "ETag, Location, Retry-After, X-Request-Id"}},
		{"GET from an origin not listed", app, "GET", "/records/missing", []string{"Origin", evil}, none(404)},
		{"GET with *", "*", "GET", "/records/missing", []string{"Origin", evil},
			want{status: 404, origin: "*", expose: "ETag, Location, Retry-After, X-Request-Id"}},
		{"GET without an Origin", app, "GET", "/records/missing", nil, none(404)},
		{"GET without CORS_ORIGINS", "", "GET", "/records/missing", []string{"Origin", app}, none(404)},
		{"OPTIONS that is no preflight", app, "OPTIONS", "/records/doc", []string{"Origin", app},
			want{status: 405, origin: app, credentials: "true", expose: "ETag, Location, Retry-After, X-Request-Id"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := corsServer(t, c.origins)
			resp, body := send(t, c.method, base+c.path, "", "", c.headers...)
			h := resp.Header
			got := want{
				status: resp.StatusCode, origin: h.Get("Access-Control-Allow-Origin"),
				credentials: h.Get("Access-Control-Allow-Credentials"), methods: h.Get("Access-Control-Allow-Methods"),
				allowHeader: h.Get("Access-Control-Allow-Headers"), expose: h.Get("Access-Control-Expose-Headers"),
			}
			if got != c.want {
				t.Fatalf("got %+v (%s), want %+v", got, body, c.want)
			}
			if c.want.origin == "" {
				for k := range h {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("header %s: %q, want no CORS header", k, h.Get(k))
					}
				}
			}
			if c.want.origin != "" && c.want.origin != "*" && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary %q: an answer that depends on Origin must say so", h.Values("Vary"))
			}
		})
	}
}

// TestCORSStream: an HTTP/1 stream, whose connection the server takes
// over to write it, carries the CORS headers of a listed origin in its
// head, and none for an origin not listed.
func TestCORSStream(t *testing.T) {
	base := corsServer(t, "https://app.example")
	for origin, want := range map[string]string{"https://app.example": "https://app.example", "https://evil.example": ""} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest(http.MethodGet, base+"/stream?event=e", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Accept", "text/event-stream")
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatal(err)
		}
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Content-Type") != "text/event-stream" ||
			h.Get("Access-Control-Allow-Origin") != want || (want != "") != (h.Get("Access-Control-Allow-Credentials") == "true") {
			t.Errorf("stream from %s: %d %v", origin, resp.StatusCode, h)
		}
		conn.Close()
	}
}
