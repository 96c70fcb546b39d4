package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// The contract checker: openapi.yaml, loaded once, and checkResponse, which
// any test of package e2e may call on any response it got from a server.

var (
	contractOnce sync.Once
	contractSpec *openapi3.T
	contractErr  error
)

// contractDoc returns openapi.yaml (the bytes the server embeds and serves),
// loaded and with every reference resolved.
func contractDoc(t testing.TB) *openapi3.T {
	t.Helper()
	spec := openapiYAML(t)
	contractOnce.Do(func() {
		loader := openapi3.NewLoader()
		contractSpec, contractErr = loader.LoadFromData(spec)
		if contractErr == nil {
			contractErr = contractSpec.Validate(loader.Context)
		}
	})
	if contractErr != nil {
		t.Fatalf("openapi.yaml: %v", contractErr)
	}
	return contractSpec
}

// specPath maps a request path to the path template of openapi.yaml that
// serves it, with the path parameters. Names contain '/', which OpenAPI 3.0
// cannot express, so {name} takes the whole rest of the path here.
func specPath(p string) (string, map[string]string) {
	rest := func(prefix string) string { return strings.TrimPrefix(p, prefix) }
	switch {
	case strings.HasPrefix(p, "/records/"):
		return "/records/{name}", map[string]string{"name": rest("/records/")}
	case strings.HasPrefix(p, "/events/"):
		return "/events/{name}", map[string]string{"name": rest("/events/")}
	case strings.HasPrefix(p, "/rpc-requests/"):
		return "/rpc-requests/{id}", map[string]string{"id": rest("/rpc-requests/")}
	case strings.HasPrefix(p, "/rpc/"):
		return "/rpc/{name}", map[string]string{"name": rest("/rpc/")}
	case strings.HasPrefix(p, "/stream/") && strings.HasSuffix(p, "/subscriptions"):
		id := strings.TrimSuffix(rest("/stream/"), "/subscriptions")
		return "/stream/{stream}/subscriptions", map[string]string{"stream": id}
	}
	return p, nil
}

// isJSONMedia reports whether a media type is JSON (application/json or a
// +json type such as application/problem+json).
func isJSONMedia(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// checkResponse checks one response against openapi.yaml: the operation
// method+target (target may carry a query) exists, status is declared for
// it, the declared headers are valid, the Content-Type is one the spec
// declares for that status, and a JSON body (application/json or
// application/problem+json) matches its schema. A problem's "status"
// member must equal the HTTP status. An error status that only the
// operation's `default` response covers is accepted and logged.
func checkResponse(t testing.TB, method, target string, status int, header http.Header, body []byte) {
	t.Helper()
	doc := contractDoc(t)
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("contract: %s %s: %v", method, target, err)
	}
	tmpl, params := specPath(u.Path)
	item := doc.Paths.Value(tmpl)
	if item == nil {
		t.Errorf("contract: %s %s: openapi.yaml has no path %s", method, target, tmpl)
		return
	}
	op := item.GetOperation(method)
	if op == nil {
		t.Errorf("contract: %s %s: openapi.yaml has no %s operation on %s", method, target, method, tmpl)
		return
	}
	ref := op.Responses.Status(status)
	if ref == nil {
		if status < 400 || op.Responses.Default() == nil {
			t.Errorf("contract: %s %s: status %d is not declared for %s %s", method, target, status, method, tmpl)
			return
		}
		t.Logf("contract: %s %s (%s): status %d is not listed; only `default` covers it", method, tmpl, op.OperationID, status)
		ref = op.Responses.Default()
	}
	resp := ref.Value
	if header == nil {
		header = http.Header{}
	}
	ct := header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)

	// Content-Type and body presence, for every media type.
	switch {
	case len(resp.Content) == 0 && method != http.MethodHead && len(body) > 0:
		t.Errorf("contract: %s %s: status %d declares no body, got %q (%s)", method, target, status, clipBody(body), ct)
	case len(resp.Content) > 0 && method != http.MethodHead && resp.Content.Get(ct) == nil:
		t.Errorf("contract: %s %s: status %d: Content-Type %q is not declared (%v)", method, target, status, ct, mediaTypes(resp.Content))
		return
	}

	// Headers always; the body when it is JSON. kin skips HEAD responses
	// entirely, so a HEAD is handed over as its GET twin with the HEAD
	// operation: its headers (ETag) are checked, and it has no body.
	req, err := http.NewRequest(method, "http://switchboard.test"+target, nil)
	if err != nil {
		t.Fatalf("contract: %s %s: %v", method, target, err)
	}
	if method == http.MethodHead {
		req.Method = http.MethodGet
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		ExcludeResponseBody:   method == http.MethodHead || !isJSONMedia(mt),
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route: &routers.Route{
				Spec: doc, Path: tmpl, PathItem: item, Method: method, Operation: op,
			},
			Options: opts,
		},
		Status:  status,
		Header:  header,
		Options: opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("contract: %s %s: status %d body %s: %v", method, target, status, clipBody(body), err)
	}

	if mt == "application/problem+json" && method != http.MethodHead {
		var p struct {
			Status int `json:"status"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.Status != status {
			t.Errorf("contract: %s %s: problem %s: status member %d, HTTP status %d (%v)", method, target, clipBody(body), p.Status, status, err)
		}
	}
}

// checkSchema checks a JSON document (an SSE frame's data) against a
// schema of components/schemas.
func checkSchema(t testing.TB, schema string, data []byte) {
	t.Helper()
	ref := contractDoc(t).Components.Schemas[schema]
	if ref == nil {
		t.Fatalf("contract: openapi.yaml has no schema %s", schema)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Errorf("contract: %s: %q is not JSON: %v", schema, clipBody(data), err)
		return
	}
	if err := ref.Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		t.Errorf("contract: %s %s: %v", schema, clipBody(data), err)
	}
}

// doChecked sends a request with do and checks the response against the
// contract; it returns what do returns.
func doChecked(t testing.TB, base, method, target, contentType, body string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	status, h, b := do(t, method, base+target, contentType, body, headers...)
	checkResponse(t, method, target, status, h, b)
	return status, h, b
}

func mediaTypes(c openapi3.Content) []string {
	var out []string
	for k := range c {
		out = append(out, k)
	}
	return out
}

func clipBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func TestOpenAPISpec(t *testing.T) {
	file, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(file)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}

	srv := startServer(t, nil)
	status, h, body := doChecked(t, srv.URL, http.MethodGet, "/openapi.yaml", "", "")
	if status != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: %d", status)
	}
	if !bytes.Equal(body, file) {
		t.Errorf("GET /openapi.yaml: %d bytes that differ from openapi.yaml's %d", len(body), len(file))
	}
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "application/yaml" {
		t.Errorf("GET /openapi.yaml: Content-Type %q", h.Get("Content-Type"))
	}
}

// want decodes a JSON response body and checks its status.
func decodeStatus(t *testing.T, status int, b []byte, wantStatus int, what string) map[string]any {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", what, status, wantStatus, clipBody(b))
	}
	if len(b) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: body %q: %v", what, clipBody(b), err)
	}
	return m
}

// jsonEq reports whether a decoded value equals the JSON text s.
func sameJSON(t *testing.T, got any, s string) bool {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", s, err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(w)
	return bytes.Equal(a, b)
}

func TestContractHappyPaths(t *testing.T) {
	srv := startServer(t, nil)
	u := srv.URL
	const mergeCT, jsonPatchCT = "application/merge-patch+json", "application/json-patch+json"

	checkRecord := func(what string, m map[string]any, h http.Header, version int, data string) {
		t.Helper()
		if m["version"] != float64(version) || !sameJSON(t, m["data"], data) {
			t.Errorf("%s: got %v, want version %d data %s", what, m, version, data)
		}
		if got := h.Get("ETag"); got != fmt.Sprintf(`"%d"`, version) {
			t.Errorf("%s: ETag %q, want \"%d\"", what, got, version)
		}
	}

	// PUT: create, replace, create-only, path writes.
	s, h, b := doChecked(t, u, "PUT", "/records/ct/doc", "application/json", `{"title":"hi","pos":{"x":1}}`)
	checkRecord("PUT create", decodeStatus(t, s, b, 201, "PUT create"), h, 1, `{"title":"hi","pos":{"x":1}}`)
	s, h, b = doChecked(t, u, "PUT", "/records/ct/doc", "application/json", `{"title":"hi","pos":{"x":1}}`, "If-Match", `"1"`)
	checkRecord("PUT replace", decodeStatus(t, s, b, 200, "PUT replace"), h, 2, `{"title":"hi","pos":{"x":1}}`)
	s, h, b = doChecked(t, u, "PUT", "/records/ct/new", "", `[1,"two",null]`, "If-None-Match", "*")
	checkRecord("PUT create-only", decodeStatus(t, s, b, 201, "PUT create-only"), h, 1, `[1,"two",null]`)
	s, h, b = doChecked(t, u, "PUT", "/records/ct/doc?path=pos.y", "application/json", `2`)
	checkRecord("PUT ?path", decodeStatus(t, s, b, 200, "PUT ?path"), h, 3, `{"title":"hi","pos":{"x":1,"y":2}}`)
	s, h, b = doChecked(t, u, "PUT", "/records/ct/pathnew?path=/a/b", "application/json", `true`)
	checkRecord("PUT ?path create", decodeStatus(t, s, b, 201, "PUT ?path create"), h, 1, `{"a":{"b":true}}`)
	long := strings.Repeat("n", 256) // the longest name
	s, _, b = doChecked(t, u, "PUT", "/records/"+long, "application/json", `0`)
	decodeStatus(t, s, b, 201, "PUT 256-byte name")

	// GET, GET ?path (dot path and JSON Pointer), HEAD.
	s, h, b = doChecked(t, u, "GET", "/records/ct/doc", "", "")
	m := decodeStatus(t, s, b, 200, "GET")
	checkRecord("GET", m, h, 3, `{"title":"hi","pos":{"x":1,"y":2}}`)
	if _, ok := m["path"]; ok || m["name"] != "ct/doc" {
		t.Errorf("GET: %v: want name ct/doc and no path", m)
	}
	s, h, b = doChecked(t, u, "GET", "/records/ct/doc?path=pos.x", "", "")
	m = decodeStatus(t, s, b, 200, "GET ?path")
	checkRecord("GET ?path", m, h, 3, `1`)
	if m["path"] != "pos.x" {
		t.Errorf("GET ?path: path %v, want pos.x", m["path"])
	}
	s, _, b = doChecked(t, u, "GET", "/records/ct/doc?path=/pos/y", "", "")
	if m = decodeStatus(t, s, b, 200, "GET ?path pointer"); !sameJSON(t, m["data"], `2`) {
		t.Errorf("GET ?path=/pos/y: %v", m)
	}
	s, h, b = doChecked(t, u, "HEAD", "/records/ct/doc", "", "")
	if s != 200 || len(b) != 0 || h.Get("ETag") != `"3"` {
		t.Errorf("HEAD: %d %q ETag %q", s, b, h.Get("ETag"))
	}

	// PATCH, both types; DELETE ?path; DELETE.
	s, h, b = doChecked(t, u, "PATCH", "/records/ct/doc", mergeCT, `{"title":"hello","pos":{"y":null}}`)
	checkRecord("PATCH merge", decodeStatus(t, s, b, 200, "PATCH merge"), h, 4, `{"title":"hello","pos":{"x":1}}`)
	s, h, b = doChecked(t, u, "PATCH", "/records/ct/doc", jsonPatchCT,
		`[{"op":"test","path":"/title","value":"hello"},{"op":"add","path":"/tags","value":["a"]}]`, "If-Match", `"4"`)
	checkRecord("PATCH json-patch", decodeStatus(t, s, b, 200, "PATCH json-patch"), h, 5, `{"title":"hello","pos":{"x":1},"tags":["a"]}`)
	s, h, b = doChecked(t, u, "DELETE", "/records/ct/doc?path=tags", "", "")
	checkRecord("DELETE ?path", decodeStatus(t, s, b, 200, "DELETE ?path"), h, 6, `{"title":"hello","pos":{"x":1}}`)
	s, h, b = doChecked(t, u, "DELETE", "/records/ct/new", "", "", "If-Match", `"1"`)
	if s != 204 || len(b) != 0 || h.Get("ETag") != `"2"` {
		t.Errorf("DELETE: %d %q ETag %q, want 204, no body, ETag \"2\"", s, b, h.Get("ETag"))
	}
	s, _, _ = doChecked(t, u, "GET", "/records/ct/new", "", "")
	if s != 404 {
		t.Errorf("GET after DELETE: %d", s)
	}

	// Batch: every kind of op.
	s, _, b = doChecked(t, u, "POST", "/batch", "application/json", `{"ops":[
		{"op":"put","name":"ct/list/a","data":{"n":1}},
		{"op":"put","name":"ct/list/b","path":"n","data":2},
		{"op":"patch","name":"ct/list/a","patch":{"m":true}},
		{"op":"patch","name":"ct/list/b","patch":[{"op":"replace","path":"/n","value":3}],"contentType":"application/json-patch+json"},
		{"op":"delete","name":"ct/pathnew","ifMatch":1},
		{"op":"put","name":"ct/list/c","data":null}]}`)
	m = decodeStatus(t, s, b, 200, "POST /batch")
	if !sameJSON(t, m["results"], `[{"name":"ct/list/a","version":1},{"name":"ct/list/b","version":1},
		{"name":"ct/list/a","version":2},{"name":"ct/list/b","version":2},{"name":"ct/pathnew","version":2},
		{"name":"ct/list/c","version":1}]`) {
		t.Errorf("POST /batch: results %v", m["results"])
	}

	// List with paging.
	s, _, b = doChecked(t, u, "GET", "/records?prefix=ct/list/&limit=2", "", "")
	m = decodeStatus(t, s, b, 200, "list page 1")
	if !sameJSON(t, m, `{"records":[{"name":"ct/list/a","version":2},{"name":"ct/list/b","version":2}],"next":"ct/list/b"}`) {
		t.Errorf("list page 1: %v", m)
	}
	s, _, b = doChecked(t, u, "GET", "/records?prefix=ct/list/&limit=2&after="+url.QueryEscape("ct/list/b"), "", "")
	m = decodeStatus(t, s, b, 200, "list page 2")
	if !sameJSON(t, m, `{"records":[{"name":"ct/list/c","version":1}],"next":null}`) {
		t.Errorf("list page 2: %v", m)
	}
	s, _, b = doChecked(t, u, "GET", "/records", "", "")
	if m = decodeStatus(t, s, b, 200, "list all"); len(m["records"].([]any)) != 5 || m["next"] != nil {
		t.Errorf("list all: %v", m)
	}

	// Events.
	s, _, b = doChecked(t, u, "POST", "/events/ct/ev", "application/json", `{"x":1}`)
	if m = decodeStatus(t, s, b, 202, "POST /events"); m["id"] == "" {
		t.Errorf("POST /events: %v", m)
	}

	// The stream: its headers and frames, and changing its subscriptions.
	c := openSSE(t, u+"/stream?record=ct/doc&event=ct/*", "")
	checkResponse(t, "GET", "/stream?record=ct/doc&event=ct/*", c.Response().StatusCode, c.Response().Header, nil)
	f := c.Expect(t, "ready")
	checkSchema(t, "ReadyFrame", []byte(f.Data))
	stream, _ := f.Decode(t)["stream"].(string)
	if stream == "" {
		t.Fatalf("ready frame %s: no stream id", f.Data)
	}
	checkSchema(t, "SnapshotFrame", []byte(c.Expect(t, "snapshot").Data))
	subs := "/stream/" + url.PathEscape(stream) + "/subscriptions"
	for _, body := range []string{`{"record":"ct/list/a"}`, `{"record":"ct/list/b","path":"n"}`, `{"event":"other/*"}`} {
		s, _, b = doChecked(t, u, "POST", subs, "application/json", body)
		decodeStatus(t, s, b, 204, "POST "+body)
		if strings.Contains(body, "record") {
			checkSchema(t, "SnapshotFrame", []byte(c.Expect(t, "snapshot").Data))
		}
		s, _, b = doChecked(t, u, "DELETE", subs, "application/json", body)
		decodeStatus(t, s, b, 204, "DELETE "+body)
	}
	doChecked(t, u, "POST", "/events/ct/ev", "application/json", `{"x":2}`)
	checkSchema(t, "EventFrame", []byte(c.Expect(t, "event").Data))
	doChecked(t, u, "PUT", "/records/ct/doc", "application/json", `{"v":7}`)
	checkSchema(t, "RecordFrame", []byte(c.Expect(t, "record").Data))
	doChecked(t, u, "DELETE", "/records/ct/doc", "", "")
	checkSchema(t, "DeleteFrame", []byte(c.Expect(t, "delete").Data))

	// The one-record stream, with a path.
	c2 := openSSE(t, u+"/records/ct/list/a?path=n", "")
	checkResponse(t, "GET", "/records/ct/list/a?path=n", c2.Response().StatusCode, c2.Response().Header, nil)
	checkSchema(t, "ReadyFrame", []byte(c2.Expect(t, "ready").Data))
	f = c2.Expect(t, "snapshot")
	checkSchema(t, "SnapshotFrame", []byte(f.Data))
	if m := f.Decode(t); m["path"] != "n" || !sameJSON(t, m["data"], `1`) {
		t.Errorf("path snapshot: %s", f.Data)
	}
	doChecked(t, u, "PUT", "/records/ct/list/a?path=n", "application/json", `5`)
	checkSchema(t, "RecordFrame", []byte(c2.Expect(t, "record").Data))

	// Operations.
	for _, p := range []string{"/healthz", "/readyz"} {
		s, _, b = doChecked(t, u, "GET", p, "", "")
		if m = decodeStatus(t, s, b, 200, p); m["status"] != "ok" {
			t.Errorf("%s: %v", p, m)
		}
	}
	s, h, b = doChecked(t, u, "GET", "/metrics", "", "")
	if s != 200 || !bytes.Contains(b, []byte("switchboard_streams_open")) {
		t.Errorf("/metrics: %d %s (%s)", s, clipBody(b), h.Get("Content-Type"))
	}
	s, _, b = doChecked(t, u, "GET", "/openapi.yaml", "", "")
	if s != 200 || !bytes.Equal(b, openapiYAML(t)) {
		t.Errorf("/openapi.yaml: %d, %d bytes", s, len(b))
	}
}

// recorder is a testing.TB that keeps failures instead of reporting them,
// to test that checkResponse finds what it should.
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(f string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(f, args...))
}
func (r *recorder) Fatalf(f string, args ...any) {
	r.Errorf(f, args...)
	runtime.Goexit()
}

// TestCheckResponse shows that the checker accepts conforming responses and
// rejects each kind of mismatch.
func TestCheckResponse(t *testing.T) {
	jsonH := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	problemH := http.Header{"Content-Type": {"application/problem+json"}}
	notFound := `{"type":"urn:switchboard:error:NOT_FOUND","title":"Not Found","status":404,"detail":"no","code":"NOT_FOUND"}`
	tests := []struct {
		name           string
		method, target string
		status         int
		header         http.Header
		body           string
		ok             bool
	}{
		{"record", "GET", "/records/chat/lobby?path=a", 200, jsonH("ETag", `"3"`), `{"name":"chat/lobby","version":3,"path":"a","data":null}`, true},
		{"problem", "GET", "/records/chat/lobby", 404, problemH, notFound, true},
		{"list", "GET", "/records?limit=1", 200, jsonH(), `{"records":[{"name":"a","version":1}],"next":"a"}`, true},
		{"head", "HEAD", "/records/a", 200, http.Header{"Etag": {`"1"`}}, "", true},
		{"subscription", "POST", "/stream/abc/subscriptions", 204, http.Header{}, "", true},
		{"default error", "PUT", "/records/a", 415, problemH, strings.Replace(strings.ReplaceAll(notFound, "NOT_FOUND", "UNSUPPORTED_MEDIA_TYPE"), "404", "415", 1), true},

		{"missing version", "GET", "/records/a", 200, jsonH("ETag", `"1"`), `{"name":"a","data":1}`, false},
		{"bad name in body", "GET", "/records/a", 200, jsonH("ETag", `"1"`), `{"name":"a//b","version":1,"data":1}`, false},
		{"text body", "GET", "/records/a", 200, http.Header{"Content-Type": {"text/plain"}}, `hello`, false},
		{"not JSON", "GET", "/records/a", 200, jsonH(), `{`, false},
		{"error as JSON", "GET", "/records/a", 404, jsonH(), notFound, false},
		{"unknown code", "GET", "/records/a", 404, problemH, strings.Replace(notFound, `"code":"NOT_FOUND"`, `"code":"NOPE"`, 1), false},
		{"problem without detail", "GET", "/records/a", 404, problemH, `{"type":"t","title":"t","status":404,"code":"NOT_FOUND"}`, false},
		{"status member", "GET", "/records/a", 404, problemH, strings.Replace(notFound, "404", "400", 1), false},
		{"PUT without ETag", "PUT", "/records/a", 201, jsonH(), `{"name":"a","version":1,"data":1}`, false},
		{"HEAD without ETag", "HEAD", "/records/a", 200, http.Header{}, "", false},
		{"undeclared success", "PUT", "/records/a", 202, jsonH(), `{}`, false},
		{"body on 204", "POST", "/stream/abc/subscriptions", 204, jsonH(), `{}`, false},
		{"next missing", "GET", "/records", 200, jsonH(), `{"records":[]}`, false},
		{"no such path", "GET", "/nope", 200, jsonH(), `{}`, false},
		{"no such method", "PATCH", "/batch", 200, jsonH(), `{}`, false},
	}
	for _, tt := range tests {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			checkResponse(r, tt.method, tt.target, tt.status, tt.header, []byte(tt.body))
		}()
		<-done
		if ok := len(r.failed) == 0; ok != tt.ok {
			t.Errorf("%s: checkResponse ok=%v, want %v: %q", tt.name, ok, tt.ok, r.failed)
		}
	}
}
