package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// badCase is one request that API.md's error table refuses.
type badCase struct {
	name    string
	method  string
	target  string // relative to the server, sent exactly as written
	ct      string
	body    string
	headers []string
	chunked bool // send the body without a Content-Length
	status  int
	code    string
	members map[string]any // problem members that must be there, with these values
}

// badRecordState is what a bad request must leave alone.
type badRecordState struct {
	Version float64
	Data    string
}

// TestBadInput sends every kind of request that API.md's error table
// refuses for records, events, batches and stream subscriptions, and
// checks the problem (status, Content-Type, code, detail, the members the
// contract names, the schema) and that nothing changed: every record keeps
// its version and data, no record appears, and a stream subscribed to the
// records and events involved receives nothing.
func TestBadInput(t *testing.T) {
	srv := startServer(t, map[string]string{"MAX_BODY_BYTES": "1024"})
	runBadCases(t, srv.URL, badInputCases)
}

// TestPGBadText: on Postgres, which refuses to compare bytes that are not
// text with its names, queries and ids of such bytes are answered as on
// the embedded store (TestBadInput): 400 or 404 as API.md says, an empty
// list for a prefix no name can start with, and a fresh stream with a
// reset for a resume token no stream can have. Never 500.
func TestPGBadText(t *testing.T) {
	_, srv := pgServers(t, 1, nil)
	u := srv[0].URL
	runBadCases(t, u, badTextCases)
	for _, prefix := range []string{"%7F", "%DF%BF", "fx%7F", "%C3%A9", "fx%20"} {
		s, _, b := do(t, http.MethodGet, u+"/records?prefix="+prefix, "", "")
		var page struct {
			Records []any
			Next    *string
		}
		if err := json.Unmarshal(b, &page); s != http.StatusOK || err != nil || page.Records == nil || len(page.Records) > 0 || page.Next != nil {
			t.Errorf("GET /records?prefix=%s: %d %s, want 200 and no records", prefix, s, b)
		}
	}
	for _, r := range []struct{ target, lastID string }{
		{"/stream?record=fx/doc&lastEventId=%00-1", ""},
		{"/stream?record=fx/doc&lastEventId=%FF-1", ""},
		{"/stream?record=fx/doc", "\xff-1"},
		{"/stream?record=fx/doc", "abcdefghijklmno\xff-3"},
	} {
		c, err := testkit.Dial(u+r.target, r.lastID)
		if err != nil {
			t.Fatalf("resume %q %q: %v", r.target, r.lastID, err)
		}
		for _, want := range []string{"ready", "reset", "snapshot"} {
			c.Expect(t, want)
		}
		c.Close()
	}
}

// runBadCases sends each of the cases to the server at u, from
// badCanonical, and checks the answer and that nothing changed.
func runBadCases(t *testing.T, u string, table func(subs string) []badCase) {
	// The watcher: any change or event that gets through shows up here.
	watch := openSSE(t, u+"/stream?record=fx/doc&record=fx/other&record=fx/new&event=ev/*", "")
	stream, _ := watch.Expect(t, "ready").Decode(t)["stream"].(string)
	if stream == "" {
		t.Fatal("ready frame without a stream id")
	}
	for range 3 {
		watch.Expect(t, "snapshot")
	}
	subs := "/stream/" + url.PathEscape(stream) + "/subscriptions"
	sentinel := badSentinel(u, watch)

	for _, c := range table(subs) {
		t.Run(c.name, func(t *testing.T) {
			badFixtures(t, u)
			sentinel(t) // the fixtures' frames
			before := badState(t, u)
			status, h, body := badSend(t, u, c)
			checkResponse(t, c.method, c.target, status, h, body)
			if status != c.status {
				t.Errorf("%s %s: status %d, want %d: %s", c.method, c.target, status, c.status, clipBody(body))
			}
			if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "application/problem+json" {
				t.Errorf("%s %s: Content-Type %q, want application/problem+json", c.method, c.target, h.Get("Content-Type"))
			}
			if c.method != http.MethodHead {
				checkProblem(t, c, body)
			} else if len(body) != 0 {
				t.Errorf("HEAD %s: body %q", c.target, clipBody(body))
			}
			if after := badState(t, u); !reflect.DeepEqual(before, after) {
				t.Errorf("%s %s changed the records:\nbefore %v\nafter  %v", c.method, c.target, before, after)
			}
			if fs := sentinel(t); len(fs) > 0 {
				t.Errorf("%s %s: the watching stream got %v", c.method, c.target, fs)
			}
		})
	}
}

// badCanonical is the state every case starts from: fx/doc at version 2,
// fx/other at version 1, nothing else.
var badCanonical = map[string]badRecordState{
	"fx/doc":   {2, `{"a":1,"list":[1,2],"obj":{"k":"v"}}`},
	"fx/other": {1, `{"n":1}`},
}

// badFixtures brings the records back to badCanonical when a case (a
// server bug) changed them, so that one bug fails one case, not the rest.
func badFixtures(t *testing.T, base string) {
	t.Helper()
	st := badState(t, base)
	if reflect.DeepEqual(st, badCanonical) {
		return
	}
	for name := range st {
		if s, _, b := do(t, "DELETE", base+"/records/"+name, "", ""); s != http.StatusNoContent {
			t.Fatalf("reset: DELETE %s: %d %s", name, s, b)
		}
	}
	for _, w := range []struct{ name, body string }{{"fx/doc", `{"a":0}`}, {"fx/doc", badCanonical["fx/doc"].Data}, {"fx/other", badCanonical["fx/other"].Data}} {
		if s, _, b := do(t, "PUT", base+"/records/"+w.name, "application/json", w.body); s/100 != 2 {
			t.Fatalf("reset: PUT %s: %d %s", w.name, s, b)
		}
	}
	if st := badState(t, base); !reflect.DeepEqual(st, badCanonical) {
		t.Fatalf("reset: %v", st)
	}
}

// badSentinel returns a function that publishes a sentinel event and
// returns every frame the watcher got before it. A write or event whose
// 2xx came back before the sentinel was sent reaches the watcher before
// it, so a request that wrongly got through cannot hide.
func badSentinel(base string, watch *sseClient) func(t *testing.T) []string {
	n := 0
	return func(t *testing.T) []string {
		t.Helper()
		n++
		if s, _, b := do(t, "POST", base+"/events/ev/sentinel", "application/json", fmt.Sprint(n)); s != http.StatusAccepted {
			t.Fatalf("sentinel: %d %s", s, b)
		}
		var got []string
		for {
			f := watch.Next(t, 5*time.Second)
			var e struct {
				Name string `json:"name"`
				Data any    `json:"data"`
			}
			if f.Event == "event" && json.Unmarshal([]byte(f.Data), &e) == nil && e.Name == "ev/sentinel" && e.Data == float64(n) {
				return got
			}
			got = append(got, f.Event+" "+f.Data)
		}
	}
}

// checkProblem checks a problem body against the case.
func checkProblem(t *testing.T, c badCase, body []byte) {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Errorf("%s %s: problem %q: %v", c.method, c.target, clipBody(body), err)
		return
	}
	if p["code"] != c.code {
		t.Errorf("%s %s: code %v, want %s: %s", c.method, c.target, p["code"], c.code, clipBody(body))
	}
	if d, _ := p["detail"].(string); strings.TrimSpace(d) == "" {
		t.Errorf("%s %s: empty detail: %s", c.method, c.target, clipBody(body))
	}
	for k, v := range c.members {
		if !reflect.DeepEqual(p[k], v) {
			t.Errorf("%s %s: %s = %v, want %v: %s", c.method, c.target, k, p[k], v, clipBody(body))
		}
	}
	if _, ok := p["index"]; ok && c.target != "/batch" {
		t.Errorf("%s %s: a single request's problem has an index: %s", c.method, c.target, clipBody(body))
	}
}

// badClient gives up on a request that hangs (a stream that opened when it
// should have been refused).
var badClient = &http.Client{Timeout: 10 * time.Second}

// badSend sends a case's request exactly as written; a chunked one has no
// Content-Length. A stream that opens is closed at once, unread.
func badSend(t *testing.T, base string, c badCase) (int, http.Header, []byte) {
	t.Helper()
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(body) // hides the length from NewRequest
	}
	req, err := http.NewRequest(c.method, base+c.target, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.chunked {
		req.ContentLength = -1 // unknown: Transfer-Encoding: chunked
	}
	if c.ct != "" {
		req.Header.Set("Content-Type", c.ct)
	}
	for i := 0; i+1 < len(c.headers); i += 2 {
		req.Header.Set(c.headers[i], c.headers[i+1])
	}
	resp, err := badClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.target, err)
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		return resp.StatusCode, resp.Header, nil
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", c.method, c.target, err)
	}
	return resp.StatusCode, resp.Header, b
}

// badState reads every record: name -> version and data.
func badState(t *testing.T, base string) map[string]badRecordState {
	t.Helper()
	s, _, b := do(t, "GET", base+"/records?limit=1000", "", "")
	var list struct {
		Records []struct {
			Name    string  `json:"name"`
			Version float64 `json:"version"`
		} `json:"records"`
	}
	if s != http.StatusOK || json.Unmarshal(b, &list) != nil {
		t.Fatalf("list records: %d %s", s, clipBody(b))
	}
	out := make(map[string]badRecordState, len(list.Records))
	for _, r := range list.Records {
		s, _, b := do(t, "GET", base+"/records/"+r.Name, "", "")
		var rec struct {
			Version float64         `json:"version"`
			Data    json.RawMessage `json:"data"`
		}
		if s != http.StatusOK || json.Unmarshal(b, &rec) != nil {
			t.Fatalf("GET %s: %d %s", r.Name, s, clipBody(b))
		}
		if rec.Version != r.Version {
			t.Errorf("record %s: listed at version %v, read at %v", r.Name, r.Version, rec.Version)
		}
		out[r.Name] = badRecordState{rec.Version, string(rec.Data)}
	}
	return out
}

// badTextCases are the requests whose query or path holds bytes that are
// not text (not UTF-8, or NUL), which no name and no stream id holds, and
// which a database refuses to compare with its own: each store answers
// them as API.md says, never 500.
func badTextCases(string) []badCase {
	var cases []badCase
	for _, v := range []string{"%FF", "%00", "a%C3", "%ED%A0%80"} {
		for _, p := range []string{"prefix", "after"} {
			cases = append(cases, badCase{name: "list " + p + "=" + v, method: "GET", target: "/records?" + p + "=" + v, status: 400,
				code: "INVALID_PARAMETER", members: map[string]any{"parameter": p}})
		}
	}
	for _, m := range []string{"POST", "DELETE"} {
		for _, id := range []string{"nope", "0190d7a2-5b1c-7c4e-9a53-2f1e0c9d8b11", "abcdefghijklmnop", "%00", "%FF", "abcdefghijklmno%FF"} {
			cases = append(cases, badCase{name: m + " subscription unknown stream " + id, method: m, target: "/stream/" + id + "/subscriptions", ct: "application/json", body: `{"record":"fx/doc"}`, status: 404, code: "NOT_FOUND"})
		}
	}
	return cases
}

// badInputCases is the table: every row of API.md's error table that
// applies to records, events, batches and stream subscriptions, in many
// forms. fx/doc is at version 2 with
// {"a":1,"list":[1,2],"obj":{"k":"v"}}, fx/other at version 1, fx/missing
// and fx/new do not exist, MAX_BODY_BYTES is 1024.
func badInputCases(subs string) []badCase {
	const (
		jsonCT    = "application/json"
		mergeCT   = "application/merge-patch+json"
		patchCT   = "application/json-patch+json"
		sseAccept = "text/event-stream"
	)
	var cases []badCase
	add := func(c badCase) {
		if c.name == "" {
			c.name = c.method + " " + c.target
		}
		cases = append(cases, c)
	}
	cv := func(v int) map[string]any { return map[string]any{"currentVersion": float64(v)} }
	index := func(i int, more ...any) map[string]any {
		m := map[string]any{"index": float64(i)}
		for j := 0; j+1 < len(more); j += 2 {
			m[more[j].(string)] = more[j+1]
		}
		return m
	}

	// INVALID_NAME, on every route that takes a name.
	badNames := []struct{ label, raw string }{
		{"empty", ""},
		{"leading slash", "/a"},
		{"trailing slash", "a/"},
		{"double slash", "a//b"},
		{"dot-dot segment", "a/../b"},
		{"dot-dot segment encoded", "a%2F..%2Fb"},
		{"dot-dot alone", ".."},
		{"dot alone", "."},
		{"dot segment", "a/./b"},
		{"dot segment encoded", "a%2F.%2Fb"},
		{"trailing dot", "a/."},
		{"trailing dot-dot", "a/.."},
		{"encoded trailing slash", "a%2F"},
		{"257 bytes", strings.Repeat("a", 257)},
		{"space", "a%20b"},
		{"non-ASCII", "%C3%A9"},
		{"NUL", "a%00b"},
		{"star", "ev/*"},
		{"percent", "a%25b"},
		// The name "fx%2Fdoc" holds '%', which names may not: decoding the
		// URL twice would turn it into the record fx/doc.
		{"percent-encoded percent", "fx%252Fdoc"},
	}
	for _, n := range badNames {
		rec := "/records/" + n.raw
		add(badCase{name: "name " + n.label + " GET", method: "GET", target: rec, status: 400, code: "INVALID_NAME"})
		add(badCase{name: "name " + n.label + " HEAD", method: "HEAD", target: rec, status: 400})
		add(badCase{name: "name " + n.label + " PUT", method: "PUT", target: rec, ct: jsonCT, body: `1`, status: 400, code: "INVALID_NAME"})
		add(badCase{name: "name " + n.label + " PUT ?path", method: "PUT", target: rec + "?path=a", ct: jsonCT, body: `1`, status: 400, code: "INVALID_NAME"})
		add(badCase{name: "name " + n.label + " PATCH", method: "PATCH", target: rec, ct: mergeCT, body: `{}`, status: 400, code: "INVALID_NAME"})
		add(badCase{name: "name " + n.label + " DELETE", method: "DELETE", target: rec, status: 400, code: "INVALID_NAME"})
		add(badCase{name: "name " + n.label + " POST /events", method: "POST", target: "/events/" + n.raw, ct: jsonCT, body: `{}`, status: 400, code: "INVALID_NAME"})
		add(badCase{name: "name " + n.label + " stream", method: "GET", target: rec, headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_NAME"})
	}
	add(badCase{name: "name in GET /stream record", method: "GET", target: "/stream?record=a//b", headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_NAME"})
	add(badCase{name: "name in GET /stream event", method: "GET", target: "/stream?event=" + url.QueryEscape("a//b/*"), headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_NAME"})
	for _, kind := range []string{"record", "event", "listen"} {
		add(badCase{name: "no name in GET /stream " + kind, method: "GET", target: "/stream?record=fx/doc&" + kind + "=", headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_NAME"})
	}
	add(badCase{name: "no user id in GET /stream presence", method: "GET", target: "/stream?presence", headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_PARAMETER", members: map[string]any{"parameter": "presence"}})

	// INVALID_PATH.
	badPaths := []string{"a..b", "a[x]", "/a~2", "", "a.", ".a", "a]", "a[1", "a[01]", "a[-1]", "a[1]b", strings.Repeat("a", 1025)}
	for _, p := range badPaths {
		q := "?path=" + url.QueryEscape(p)
		label := fmt.Sprintf("path %.20q", p)
		add(badCase{name: label + " GET", method: "GET", target: "/records/fx/doc" + q, status: 400, code: "INVALID_PATH"})
		add(badCase{name: label + " PUT", method: "PUT", target: "/records/fx/doc" + q, ct: jsonCT, body: `1`, status: 400, code: "INVALID_PATH"})
		add(badCase{name: label + " PUT new", method: "PUT", target: "/records/fx/new" + q, ct: jsonCT, body: `1`, status: 400, code: "INVALID_PATH"})
		add(badCase{name: label + " DELETE", method: "DELETE", target: "/records/fx/doc" + q, status: 400, code: "INVALID_PATH"})
		add(badCase{name: label + " stream", method: "GET", target: "/records/fx/doc" + q, headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_PATH"})
	}
	add(badCase{name: "PATCH with ?path", method: "PATCH", target: "/records/fx/doc?path=a", ct: mergeCT, body: `2`, status: 400, code: "INVALID_PATH"})

	// INVALID_JSON: malformed bodies.
	malformed := []string{"{", "{} x", `{"a":}`, "", "nul", "[1,]", "{'a':1}", `{"a":1}}`, "1 2", `"abc`, "{}\f", "\u00a0{}"}
	for _, m := range malformed {
		label := fmt.Sprintf("malformed %q", m)
		add(badCase{name: label + " PUT", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PUT ?path", method: "PUT", target: "/records/fx/doc?path=a", ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PUT new", method: "PUT", target: "/records/fx/new", ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PATCH merge", method: "PATCH", target: "/records/fx/doc", ct: mergeCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PATCH json-patch", method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " POST /events", method: "POST", target: "/events/ev/x", ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " POST /batch", method: "POST", target: "/batch", ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " POST subscription", method: "POST", target: subs, ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " DELETE subscription", method: "DELETE", target: subs, ct: jsonCT, body: m, status: 400, code: "INVALID_JSON"})
	}
	for _, p := range []string{`{}`, `[1]`, `{"op":"add","path":"/a","value":1}`,
		`[{"op":"test","path":""}]`, `[{"op":"test","path":"/a"}]`, `[{"op":"add","path":"/b"}]`, `[{"op":"replace","path":"/a"}]`,
		`[{"op":"copy","path":"/b"}]`, `[{"op":"move","path":"/b"}]`, `[{"op":"remove"}]`, `[{"path":"/a"}]`, `[{"op":"frob","path":"/a"}]`,
		`[{"op":1,"path":"/a"}]`, `[{"op":"remove","path":1}]`} {
		add(badCase{name: "not a JSON Patch " + p, method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: p, status: 400, code: "INVALID_JSON"})
	}

	// INVALID_JSON: text that is not Unicode, in every body (r.Data of a
	// record would come back as U+FFFD, or as invalid JSON).
	for _, v := range []string{"\"\xff\"", `"\ud800"`, `"\udc00"`, `"a\ud83d"`, `"\ud83d\n"`, `"\ud83d\ud83d"`, "\"\xed\xa0\x80\"", `{"\ud800":1}`} {
		label := fmt.Sprintf("not Unicode %q", v)
		add(badCase{name: label + " PUT", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: `{"s":` + v + `}`, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PUT ?path", method: "PUT", target: "/records/fx/doc?path=a", ct: jsonCT, body: v, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PUT new", method: "PUT", target: "/records/fx/new", ct: jsonCT, body: v, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PATCH merge", method: "PATCH", target: "/records/fx/doc", ct: mergeCT, body: `{"a":` + v + `}`, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " PATCH json-patch", method: "PATCH", target: "/records/fx/doc", ct: patchCT,
			body: `[{"op":"add","path":"/a","value":` + v + `}]`, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " POST /events", method: "POST", target: "/events/ev/x", ct: jsonCT, body: `[` + v + `]`, status: 400, code: "INVALID_JSON"})
		add(badCase{name: label + " POST /batch", method: "POST", target: "/batch", ct: jsonCT,
			body: `{"ops":[{"op":"put","name":"fx/doc","data":` + v + `}]}`, status: 400, code: "INVALID_JSON"})
	}

	// INVALID_PARAMETER: a query string that does not parse is refused
	// before anything reads it (a lost ?path= would write the whole record).
	for _, q := range []string{"path=pos;x", "path=pos%zz", "path=a&x=%", "p%zz=1&path=a"} {
		label := "query " + q
		add(badCase{name: label + " GET", method: "GET", target: "/records/fx/doc?" + q, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " PUT", method: "PUT", target: "/records/fx/doc?" + q, ct: jsonCT, body: `{"replaced":true}`, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " PUT new", method: "PUT", target: "/records/fx/new?" + q, ct: jsonCT, body: `1`, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " PATCH", method: "PATCH", target: "/records/fx/doc?" + q, ct: mergeCT, body: `{"a":9}`, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " DELETE", method: "DELETE", target: "/records/fx/doc?" + q, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " stream", method: "GET", target: "/records/fx/doc?" + q, headers: []string{"Accept", sseAccept}, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " POST /events", method: "POST", target: "/events/ev/x?" + q, ct: jsonCT, body: `1`, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " POST /batch", method: "POST", target: "/batch?" + q, ct: jsonCT, body: `{"ops":[{"op":"delete","name":"fx/other"}]}`, status: 400, code: "INVALID_PARAMETER"})
		add(badCase{name: label + " list", method: "GET", target: "/records?" + q, status: 400, code: "INVALID_PARAMETER"})
	}
	for _, c := range []struct{ label, q string }{
		{"semicolon", "path=pos;x"}, {"bad escape", "path=pos%zz"},
	} {
		add(badCase{name: "query names the parameter: " + c.label, method: "PUT", target: "/records/fx/doc?" + c.q, ct: jsonCT, body: `1`,
			status: 400, code: "INVALID_PARAMETER", members: map[string]any{"parameter": "path"}})
	}
	many := "path=a" + strings.Repeat("&x=1", 10000) // past net/url's 10,000 parameters
	add(badCase{name: "query over 10000 parameters PUT", method: "PUT", target: "/records/fx/doc?" + many, ct: jsonCT, body: `{"replaced":true}`, status: 400, code: "INVALID_PARAMETER"})
	add(badCase{name: "query over 10000 parameters DELETE", method: "DELETE", target: "/records/fx/doc?" + many, status: 400, code: "INVALID_PARAMETER"})
	add(badCase{name: "query over 10000 parameters GET", method: "GET", target: "/records/fx/doc?" + many, status: 400, code: "INVALID_PARAMETER"})

	// INVALID_JSON: batches of the wrong shape.
	for _, b := range []string{`[]`, `{}`, `{"ops":[]}`, `{"ops":null}`, `{"ops":"x"}`, `{"ops":[1]}`,
		`{"ops":[{"op":"put","name":"fx/doc","data":1,"ifMatch":"2"}]}`} {
		add(badCase{name: "batch shape " + b, method: "POST", target: "/batch", ct: jsonCT, body: b, status: 400, code: "INVALID_JSON"})
	}
	// An op of the wrong shape is named by its index, as any failing op.
	for _, op := range []string{`7`, `{"op":"put","name":5,"data":1}`, `{"op":"put","name":"fx/doc","data":1,"ifMatch":"2"}`} {
		add(badCase{name: "batch op shape " + op, method: "POST", target: "/batch", ct: jsonCT,
			body:   `{"ops":[{"op":"delete","name":"fx/other"},` + op + `]}`,
			status: 400, code: "INVALID_JSON", members: index(1)})
	}

	// PAYLOAD_TOO_LARGE: 2000 bytes against MAX_BODY_BYTES=1024, with and
	// without a Content-Length.
	pad := func(prefix, suffix string) string {
		return prefix + strings.Repeat("x", 2000-len(prefix)-len(suffix)) + suffix
	}
	big := pad(`{"pad":"`, `"}`)
	bigBatch := pad(`{"ops":[{"op":"put","name":"fx/doc","data":"`, `"}]}`)
	bigSub := pad(`{"record":"fx/doc","path":"`, `"}`)
	for _, chunked := range []bool{false, true} {
		how := "Content-Length"
		if chunked {
			how = "chunked"
		}
		for _, c := range []badCase{
			{method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: big},
			{method: "PUT", target: "/records/fx/new", ct: jsonCT, body: big},
			{method: "PUT", target: "/records/fx/doc?path=a", ct: jsonCT, body: big},
			{method: "PATCH", target: "/records/fx/doc", ct: mergeCT, body: big},
			{method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: pad(`[{"op":"add","path":"/a","value":"`, `"}]`)},
			{method: "POST", target: "/events/ev/x", ct: jsonCT, body: big},
			{method: "POST", target: "/batch", ct: jsonCT, body: bigBatch},
			{method: "POST", target: subs, ct: jsonCT, body: bigSub},
			{method: "DELETE", target: subs, ct: jsonCT, body: bigSub},
		} {
			c.name = fmt.Sprintf("too large %s %s %s %s", how, c.method, c.target, c.ct)
			c.chunked, c.status, c.code = chunked, 413, "PAYLOAD_TOO_LARGE"
			add(c)
		}
	}

	// UNSUPPORTED_MEDIA_TYPE.
	for _, ct := range []string{jsonCT, "text/plain", "", "application/json-patch", "application/merge-patch", "nonsense"} {
		add(badCase{name: fmt.Sprintf("PATCH Content-Type %q", ct), method: "PATCH", target: "/records/fx/doc", ct: ct, body: `{"a":2}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
	}
	add(badCase{name: "PATCH missing record as text/plain", method: "PATCH", target: "/records/fx/missing", ct: "text/plain", body: `{"a":2}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
	for _, ct := range []string{"text/plain", "application/xml", "application/x-www-form-urlencoded", "nonsense"} {
		add(badCase{name: fmt.Sprintf("PUT Content-Type %q", ct), method: "PUT", target: "/records/fx/doc", ct: ct, body: `{"a":2}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
		add(badCase{name: fmt.Sprintf("PUT new Content-Type %q", ct), method: "PUT", target: "/records/fx/new", ct: ct, body: `{"a":2}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
	}
	add(badCase{method: "POST", target: "/events/ev/x", ct: "text/plain", body: `{}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
	add(badCase{method: "POST", target: "/batch", ct: "text/plain", body: `{"ops":[{"op":"delete","name":"fx/other"}]}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
	add(badCase{method: "POST", target: subs, ct: "text/plain", body: `{"record":"fx/other"}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})
	add(badCase{method: "DELETE", target: subs, ct: "text/plain", body: `{"record":"fx/doc"}`, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"})

	// VERSION_CONFLICT (fx/doc is at version 2). A weak tag never matches
	// If-Match; an opaque one is no version.
	for _, im := range []string{`"1"`, `"3"`, `W/"2"`, `"abc"`, `"0"`} {
		h := []string{"If-Match", im}
		add(badCase{name: "If-Match " + im + " PUT", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: `{}`, headers: h, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
		add(badCase{name: "If-Match " + im + " PUT ?path", method: "PUT", target: "/records/fx/doc?path=a", ct: jsonCT, body: `5`, headers: h, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
		add(badCase{name: "If-Match " + im + " PATCH merge", method: "PATCH", target: "/records/fx/doc", ct: mergeCT, body: `{"a":5}`, headers: h, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
		add(badCase{name: "If-Match " + im + " PATCH json-patch", method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: `[{"op":"remove","path":"/a"}]`, headers: h, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
		add(badCase{name: "If-Match " + im + " DELETE", method: "DELETE", target: "/records/fx/doc", headers: h, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
		add(badCase{name: "If-Match " + im + " DELETE ?path", method: "DELETE", target: "/records/fx/doc?path=a", headers: h, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
	}
	add(badCase{name: "If-None-Match * PUT existing", method: "PUT", target: "/records/fx/doc", ct: jsonCT, body: `{}`, headers: []string{"If-None-Match", "*"}, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
	add(badCase{name: "If-None-Match * PUT ?path existing", method: "PUT", target: "/records/fx/doc?path=z", ct: jsonCT, body: `{}`, headers: []string{"If-None-Match", "*"}, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
	add(badCase{name: "If-Match PUT missing", method: "PUT", target: "/records/fx/missing", ct: jsonCT, body: `{}`, headers: []string{"If-Match", `"1"`}, status: 412, code: "VERSION_CONFLICT", members: cv(0)})
	add(badCase{name: "If-Match DELETE missing", method: "DELETE", target: "/records/fx/missing", headers: []string{"If-Match", `"1"`}, status: 412, code: "VERSION_CONFLICT", members: cv(0)})
	add(badCase{name: "If-Match PATCH missing", method: "PATCH", target: "/records/fx/missing", ct: mergeCT, body: `{}`, headers: []string{"If-Match", `"1"`}, status: 412, code: "VERSION_CONFLICT", members: cv(0)})

	for _, c := range []struct{ label, target, ct, body string }{
		{"PUT", "/records/fx/doc", jsonCT, `{}`},
		{"PUT ?path", "/records/fx/doc?path=a", jsonCT, `5`},
		{"PATCH", "/records/fx/doc", mergeCT, `{"a":5}`},
		{"DELETE", "/records/fx/doc", "", ""},
		{"DELETE ?path", "/records/fx/doc?path=a", "", ""},
	} {
		method, _, _ := strings.Cut(c.label, " ")
		// If-None-Match "<version>" refuses the write at that version (RFC
		// 9110: weak comparison).
		for _, inm := range []string{`"2"`, `W/"2"`} {
			add(badCase{name: "If-None-Match " + inm + " " + c.label, method: method, target: c.target, ct: c.ct, body: c.body,
				headers: []string{"If-None-Match", inm}, status: 412, code: "VERSION_CONFLICT", members: cv(2)})
		}
		// If-Match: * writes only a record that exists.
		missing := strings.Replace(c.target, "fx/doc", "fx/missing", 1)
		add(badCase{name: "If-Match * " + c.label + " missing", method: method, target: missing, ct: c.ct, body: c.body,
			headers: []string{"If-Match", "*"}, status: 412, code: "VERSION_CONFLICT", members: cv(0)})
		// Malformed conditions: INVALID_PARAMETER naming the header.
		for _, h := range []string{"If-Match", "If-None-Match"} {
			for _, v := range []string{`abc`, `"2`, `W/2`, `"1", "2"`, `**`, `-3`} {
				add(badCase{name: "malformed " + h + " " + v + " " + c.label, method: method, target: c.target, ct: c.ct, body: c.body,
					headers: []string{h, v}, status: 400, code: "INVALID_PARAMETER", members: map[string]any{"parameter": h}})
			}
		}
	}

	// PATCH_FAILED.
	for _, p := range []struct{ label, patch string }{
		{"test fails", `[{"op":"test","path":"/a","value":2}]`},
		{"test fails after a replace", `[{"op":"replace","path":"/a","value":5},{"op":"test","path":"/a","value":1}]`},
		{"remove missing", `[{"op":"remove","path":"/nope"}]`},
		{"replace missing", `[{"op":"replace","path":"/nope","value":1}]`},
		{"add under missing", `[{"op":"add","path":"/nope/deep","value":1}]`},
		{"move from missing", `[{"op":"move","from":"/nope","path":"/b"}]`},
		{"remove past the end", `[{"op":"remove","path":"/list/5"}]`},
		{"test past the end", `[{"op":"test","path":"/list/5","value":1}]`},
	} {
		add(badCase{name: "JSON Patch " + p.label, method: "PATCH", target: "/records/fx/doc", ct: patchCT, body: p.patch, status: 409, code: "PATCH_FAILED"})
	}

	// NOT_FOUND.
	add(badCase{name: "GET missing", method: "GET", target: "/records/fx/missing", status: 404, code: "NOT_FOUND"})
	add(badCase{name: "HEAD missing", method: "HEAD", target: "/records/fx/missing", status: 404})
	add(badCase{name: "PATCH merge missing", method: "PATCH", target: "/records/fx/missing", ct: mergeCT, body: `{"a":1}`, status: 404, code: "NOT_FOUND"})
	add(badCase{name: "PATCH json-patch missing", method: "PATCH", target: "/records/fx/missing", ct: patchCT, body: `[{"op":"add","path":"/a","value":1}]`, status: 404, code: "NOT_FOUND"})
	add(badCase{name: "DELETE missing", method: "DELETE", target: "/records/fx/missing", status: 404, code: "NOT_FOUND"})
	add(badCase{name: "DELETE ?path of missing record", method: "DELETE", target: "/records/fx/missing?path=a", status: 404, code: "NOT_FOUND"})
	add(badCase{name: "GET ?path of missing record", method: "GET", target: "/records/fx/missing?path=a", status: 404, code: "NOT_FOUND"})
	for _, p := range []string{"nope", "list[5]", "a.b", "/obj/nope", "obj.k.deeper", "list.x", "/list/-"} {
		add(badCase{name: "GET missing path " + p, method: "GET", target: "/records/fx/doc?path=" + url.QueryEscape(p), status: 404, code: "NOT_FOUND"})
		add(badCase{name: "DELETE missing path " + p, method: "DELETE", target: "/records/fx/doc?path=" + url.QueryEscape(p), status: 404, code: "NOT_FOUND"})
	}

	// POST /batch: the first failing op's error, its index, and nothing applied.
	ok0 := `{"op":"put","name":"fx/new","data":{"from":"batch"}}`
	ok1 := `{"op":"patch","name":"fx/other","patch":{"n":2}}`
	for _, b := range []struct {
		label, op3 string
		status     int
		code       string
		current    bool // the problem carries currentVersion 2
	}{
		{"JSON Patch test fails", `{"op":"patch","name":"fx/doc","patch":[{"op":"test","path":"/a","value":9}],"contentType":"application/json-patch+json"}`, 409, "PATCH_FAILED", false},
		{"JSON Patch array sniffed", `{"op":"patch","name":"fx/doc","patch":[{"op":"remove","path":"/nope"}]}`, 409, "PATCH_FAILED", false},
		{"ifMatch", `{"op":"put","name":"fx/doc","data":1,"ifMatch":1}`, 412, "VERSION_CONFLICT", true},
		{"ifMatch after an earlier op wrote it", `{"op":"delete","name":"fx/other","ifMatch":1}`, 412, "VERSION_CONFLICT", false},
		{"delete missing", `{"op":"delete","name":"fx/missing"}`, 404, "NOT_FOUND", false},
		{"delete missing path", `{"op":"delete","name":"fx/doc","path":"nope"}`, 404, "NOT_FOUND", false},
		{"patch missing", `{"op":"patch","name":"fx/missing","patch":{"a":1}}`, 404, "NOT_FOUND", false},
		{"unknown op", `{"op":"upsert","name":"fx/doc","data":1}`, 400, "INVALID_JSON", false},
		{"no op", `{"name":"fx/doc","data":1}`, 400, "INVALID_JSON", false},
		{"invalid name", `{"op":"put","name":"a//b","data":1}`, 400, "INVALID_NAME", false},
		{"no name", `{"op":"delete"}`, 400, "INVALID_NAME", false},
		{"invalid path", `{"op":"put","name":"fx/doc","path":"a..b","data":1}`, 400, "INVALID_PATH", false},
		{"put without data", `{"op":"put","name":"fx/doc"}`, 400, "INVALID_JSON", false},
		{"patch without patch", `{"op":"patch","name":"fx/doc"}`, 400, "INVALID_JSON", false},
		{"patch content type", `{"op":"patch","name":"fx/doc","patch":{"a":2},"contentType":"text/plain"}`, 415, "UNSUPPORTED_MEDIA_TYPE", false},
		{"not a JSON Patch", `{"op":"patch","name":"fx/doc","patch":{"a":2},"contentType":"application/json-patch+json"}`, 400, "INVALID_JSON", false},
	} {
		members := index(2)
		if b.current {
			members = index(2, "currentVersion", float64(2))
		}
		add(badCase{name: "batch third op " + b.label, method: "POST", target: "/batch", ct: jsonCT,
			body:   `{"ops":[` + ok0 + `,` + ok1 + `,` + b.op3 + `]}`,
			status: b.status, code: b.code, members: members})
	}
	add(badCase{name: "batch first op unknown", method: "POST", target: "/batch", ct: jsonCT,
		body: `{"ops":[{"op":"upsert","name":"fx/doc","data":1},` + ok0 + `]}`, status: 400, code: "INVALID_JSON", members: index(0)})
	add(badCase{name: "batch same record twice, stale ifMatch", method: "POST", target: "/batch", ct: jsonCT,
		body:   `{"ops":[{"op":"put","name":"fx/doc","data":1,"ifMatch":2},{"op":"put","name":"fx/doc","data":2,"ifMatch":2}]}`,
		status: 412, code: "VERSION_CONFLICT", members: index(1)})

	// GET /records: limit out of range.
	for _, l := range []string{"0", "1001", "abc", "-1", "1.5", "1e3", "%20"} {
		add(badCase{name: "list limit=" + l, method: "GET", target: "/records?limit=" + l, status: 400,
			code: "INVALID_PARAMETER", members: map[string]any{"parameter": "limit"}})
	}

	cases = append(cases, badTextCases(subs)...)

	// Stream subscriptions: unknown stream, invalid bodies.
	for _, m := range []string{"POST", "DELETE"} {
		for _, b := range []struct{ body, code string }{
			{`{}`, "INVALID_JSON"},
			{`[]`, "INVALID_JSON"},
			{`null`, "INVALID_JSON"},
			{`{"record":1}`, "INVALID_JSON"},
			{`{"path":"a"}`, "INVALID_JSON"},
			{`{"record":"fx/doc","event":"ev/x"}`, "INVALID_JSON"},
			{`{"record":""}`, "INVALID_JSON"},
			{`{"record":"a//b"}`, "INVALID_NAME"},
			{`{"record":"fx/doc/"}`, "INVALID_NAME"},
			{`{"event":"a//b"}`, "INVALID_NAME"},
			{`{"event":"ev/*/*"}`, "INVALID_NAME"},
			{`{"event":"**"}`, "INVALID_NAME"}, // "*" is every event (a collection)
			{`{"record":"fx/doc","path":"a..b"}`, "INVALID_PATH"},
			{`{"event":"ev/x","path":"a"}`, "INVALID_PATH"},
		} {
			add(badCase{name: m + " subscription " + b.body, method: m, target: subs, ct: jsonCT, body: b.body, status: 400, code: b.code})
		}
	}

	return cases
}
