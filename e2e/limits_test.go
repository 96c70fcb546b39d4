package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// resultLimits are the limits TestBadResults runs under: bodies as large
// as by default, records of at most 4 KiB.
var resultLimits = map[string]string{"MAX_RECORD_BYTES": "4096"}

// TestBadResults checks what a write leaves, whatever its body: a record
// over MAX_RECORD_BYTES or nested too deep is refused and nothing changes,
// on the embedded store; TestPGBadResults runs the same on Postgres.
func TestBadResults(t *testing.T) {
	runBadCases(t, startServer(t, resultLimits).URL, badResultCases)
}

func TestPGBadResults(t *testing.T) {
	_, srv := pgServers(t, 1, resultLimits)
	runBadCases(t, srv[0].URL, badResultCases)
}

// badResultCases: fx/doc is at version 2 with
// {"a":1,"list":[1,2],"obj":{"k":"v"}}, MAX_RECORD_BYTES is 4096.
func badResultCases(string) []badCase {
	const jsonCT, mergeCT, patchCT = "application/json", "application/merge-patch+json", "application/json-patch+json"
	big := `"` + strings.Repeat("x", 4100) + `"`
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	// Each copy and move doubles /x: 2^18 times 40 bytes unbounded.
	bomb := []string{`{"op":"add","path":"/x","value":["` + strings.Repeat("x", 40) + `"]}`}
	for range 18 {
		bomb = append(bomb, `{"op":"copy","from":"/x","path":"/y"}`, `{"op":"move","from":"/y","path":"/x/-"}`)
	}
	tooLarge := func(c badCase) badCase { c.status, c.code = 413, "PAYLOAD_TOO_LARGE"; return c }
	tooDeep := func(c badCase) badCase { c.status, c.code = 400, "INVALID_JSON"; return c }
	return []badCase{
		tooLarge(badCase{name: "record too large PUT", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: big}),
		tooLarge(badCase{name: "record too large PUT new", method: "PUT", target: "/records/fx/new", ct: jsonCT, body: big}),
		tooLarge(badCase{name: "record too large PUT ?path", method: "PUT", target: "/records/fx/doc?path=s", ct: jsonCT, body: `"` + strings.Repeat("x", 4060) + `"`}),
		tooLarge(badCase{name: "record too large PATCH merge", method: "PATCH", target: "/records/fx/doc", ct: mergeCT, body: `{"s":` + big + `}`}),
		tooLarge(badCase{name: "record too large JSON Patch copies", method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: "[" + strings.Join(bomb, ",") + "]"}),
		tooLarge(badCase{name: "record too large batch", method: "POST", target: "/batch", ct: jsonCT,
			body:    `{"ops":[{"op":"put","name":"fx/new","data":1},{"op":"put","name":"fx/doc","path":"s","data":` + big + `}]}`,
			members: map[string]any{"index": float64(1)}}),
		tooDeep(badCase{name: "body too deep PUT", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: nest(1001)}),
		tooDeep(badCase{name: "record too deep PUT ?path", method: "PUT", target: "/records/fx/doc?path=a", ct: jsonCT, body: nest(1000)}),
		tooDeep(badCase{name: "record too deep PUT new ?path", method: "PUT", target: "/records/fx/new?path=a.b.c", ct: jsonCT, body: nest(998)}),
		tooDeep(badCase{name: "record too deep JSON Patch", method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: `[{"op":"add","path":"/obj/k","value":` + nest(999) + `}]`}),
		tooDeep(badCase{name: "record too deep merge", method: "PATCH", target: "/records/fx/doc", ct: mergeCT, body: `{"obj":{"k":` + nest(999) + `}}`}),
		tooDeep(badCase{name: "record too deep batch", method: "POST", target: "/batch", ct: jsonCT,
			body: `{"ops":[{"op":"put","name":"fx/doc","path":"z.y.x.w","data":` + nest(997) + `}]}`, members: map[string]any{"index": float64(0)}}),
		{name: "query path lost PUT", method: "PUT", target: "/records/fx/doc?path=pos;x", ct: jsonCT, body: `{"replaced":true}`, status: 400, code: "INVALID_PARAMETER"},
		{name: "query path lost DELETE", method: "DELETE", target: "/records/fx/doc?path=pos%zz", status: 400, code: "INVALID_PARAMETER"},
		{name: "If-Match * missing", method: "PUT", target: "/records/fx/missing", ct: jsonCT, body: `1`, headers: []string{"If-Match", "*"},
			status: 412, code: "VERSION_CONFLICT", members: map[string]any{"currentVersion": float64(0)}},
		{name: "If-None-Match current version", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: `1`, headers: []string{"If-None-Match", `"2"`},
			status: 412, code: "VERSION_CONFLICT", members: map[string]any{"currentVersion": float64(2)}},
	}
}

// TestGoodConditions checks that the conditions of RFC 9110 let the writes
// through that they should.
func TestGoodConditions(t *testing.T) {
	u := startServer(t, nil).URL + "/records/cond"
	for _, w := range []struct {
		method, header, value, body string
		status                      int
	}{
		{"PUT", "If-None-Match", "*", `1`, 201},
		{"PUT", "If-Match", "*", `2`, 200},
		{"PUT", "If-None-Match", `"1"`, `3`, 200}, // at version 2
		{"PUT", "If-Match", `"3"`, `4`, 200},
		{"PUT", "If-None-Match", `W/"3"`, `5`, 200}, // at version 4
		{"DELETE", "If-Match", "*", ``, 204},
	} {
		ct := ""
		if w.body != "" {
			ct = "application/json"
		}
		if st, _, b := do(t, w.method, u, ct, w.body, w.header, w.value); st != w.status {
			t.Errorf("%s %s: %s: %d %s, want %d", w.method, w.header, w.value, st, b, w.status)
		}
	}
}

// rawExchange sends req on a new connection and returns the response
// head's status and Content-Type, and its body.
func rawExchange(t *testing.T, base, req string) (int, string, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, req) // the server may answer before it has read it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer to %.40q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// TestServerOwnErrors checks the requests that net/http refuses before
// any handler runs: they are problem+json too.
func TestServerOwnErrors(t *testing.T) {
	srv := startServer(t, nil)
	for _, c := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"bad escape in the path", "GET /records/a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "INVALID_PARAMETER"},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "INVALID_PARAMETER"},
		{"headers too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20+8<<10) + "\r\n\r\n", 431, "PAYLOAD_TOO_LARGE"},
	} {
		st, ct, body := rawExchange(t, srv.URL, c.req)
		var p struct {
			Status int
			Code   string
			Detail string
		}
		mt, _, _ := mime.ParseMediaType(ct)
		if err := json.Unmarshal(body, &p); err != nil || st != c.status || mt != "application/problem+json" ||
			p.Status != st || p.Code != c.code || p.Detail == "" {
			t.Errorf("%s: %d %s %q (%v), want %d problem+json %s", c.name, st, ct, clipBody(body), err, c.status, c.code)
		}
	}
	if st, _, _ := do(t, "GET", srv.URL+"/healthz", "", ""); st != 200 {
		t.Errorf("after: /healthz %d", st)
	}
}

// slowBody opens a connection that sends a request's head and one byte of
// its body, then nothing, and returns it.
func slowBody(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "PUT /records/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
	return c
}

// TestSlowBodies checks that a body that does not arrive holds its
// connection only until BODY_TIMEOUT, and that nothing is written.
func TestSlowBodies(t *testing.T) {
	srv := startServer(t, map[string]string{"BODY_TIMEOUT": "300ms"})
	conns := make([]net.Conn, 50)
	for i := range conns {
		conns[i] = slowBody(t, srv.URL)
	}
	start := time.Now()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: no answer after %s: %v", i, time.Since(start), err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("connection %d: status %d, want 400", i, resp.StatusCode)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("slow bodies held their connections for %s with BODY_TIMEOUT=300ms", d)
	}
	if st, _, b := do(t, "GET", srv.URL+"/records/slow", "", ""); st != http.StatusNotFound {
		t.Errorf("GET /records/slow: %d %s", st, b)
	}
}

// TestSlowBodyShutdown checks that a body still arriving does not hold a
// shutdown for long: the server exits cleanly, long before
// SHUTDOWN_TIMEOUT and BODY_TIMEOUT.
func TestSlowBodyShutdown(t *testing.T) {
	srv := startServer(t, map[string]string{"BODY_TIMEOUT": "1m", "SHUTDOWN_TIMEOUT": "1m"})
	slowBody(t, srv.URL)
	time.Sleep(100 * time.Millisecond) // the request has reached its handler
	start := time.Now()
	srv.Stop(t) // fails the test if server.Run returns an error
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %s with a slow body in flight", d)
	}
}

// TestMethodNotAllowed checks 405 METHOD_NOT_ALLOWED with the methods the
// path has in Allow.
func TestMethodNotAllowed(t *testing.T) {
	srv := startServer(t, nil)
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/records/x", "GET, HEAD, PUT, PATCH, DELETE"},
		{"GET", "/batch", "POST"},
		{"DELETE", "/healthz", "GET"},
		{"PUT", "/stream/s/subscriptions", "POST, DELETE"},
		{"GET", "/rpc/add-two", "POST"},
	} {
		st, h, b := do(t, c.method, srv.URL+c.path, "", "")
		var p struct{ Code string }
		json.Unmarshal(b, &p)
		if st != http.StatusMethodNotAllowed || p.Code != "METHOD_NOT_ALLOWED" || h.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q %s, want 405 METHOD_NOT_ALLOWED Allow %q", c.method, c.path, st, h.Get("Allow"), b, c.allow)
		}
	}
}
