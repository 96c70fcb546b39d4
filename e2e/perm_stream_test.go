package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The stream under permission rules, end to end: what the rules refuse
// never appears in the bytes a client reads. These tests need the server
// to read PERMISSIONS_FILE.

const permStreamRules = `
record:
  "pub/$id":
    read: true
    create: true
    write: true
    delete: true
  "secret/$id":
    read: false
    create: true
    write: true
    delete: true
  "doc/$id":
    read: "data.public == true"
    create: true
    write: true
    delete: true
event:
  "chat/$room":
    publish: true
    subscribe: "$room != 'staff'"
`

// rawStream opens GET url as an event stream and returns what it has read
// so far, at any time.
func rawStream(t *testing.T, url string) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	var raw lockedBuffer
	go io.Copy(&raw, resp.Body)
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return func() string {
		raw.mu.Lock()
		defer raw.mu.Unlock()
		return raw.buf.String()
	}
}

// waitFor polls read until it holds every one of want.
func waitFor(t *testing.T, read func() string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := read()
		missing := ""
		for _, w := range want {
			if !strings.Contains(got, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream never carried %s; it read:\n%s", missing, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startPermServer(t *testing.T) *testServer {
	t.Helper()
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, []byte(permStreamRules), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, map[string]string{"PERMISSIONS_FILE": file})
}

// TestPermStreamNeverLeaks: one stream subscribed to an allowed record, a
// forbidden one, one whose read rule is on its data (which flips
// mid-stream) and a chat wildcard with a forbidden room; writes to all of
// them. The raw bytes hold the allowed data and denied frames, and
// nothing of the rest.
func TestPermStreamNeverLeaks(t *testing.T) {
	srv := startPermServer(t)
	put(t, srv.URL, "doc/1", `{"public":true,"v":"shown"}`)
	read := rawStream(t, srv.URL+"/stream?record=pub/a&record=secret/b&record=doc/1&event=chat/*")
	waitFor(t, read, `"code":"PERMISSION_DENIED"`, `"shown"`)
	put(t, srv.URL, "secret/b", `{"s":"SECRET-1"}`)
	put(t, srv.URL, "doc/1", `{"public":true,"v":"still-shown"}`)
	put(t, srv.URL, "doc/1", `{"public":false,"v":"SECRET-FLIP"}`)
	put(t, srv.URL, "doc/1", `{"public":true,"v":"SECRET-AFTER-END"}`)
	publishEvent(t, srv.URL, "chat/staff", `"SECRET-EVENT"`)
	publishEvent(t, srv.URL, "chat/lobby", `"hello"`)
	put(t, srv.URL, "secret/b", `{"s":"SECRET-2"}`)
	put(t, srv.URL, "pub/a", `{"final":true}`)
	got := waitFor(t, read, `"still-shown"`, `"hello"`, `"final"`,
		`{"subscription":{"record":"secret/b"},"code":"PERMISSION_DENIED"}`,
		`{"subscription":{"record":"doc/1"},"code":"PERMISSION_DENIED"}`)
	for _, secret := range []string{"SECRET", "chat/staff"} {
		if strings.Contains(got, secret) {
			t.Errorf("the stream carried %q:\n%s", secret, got)
		}
	}
}

// TestPermRecordStreamRefused: the per-record stream answers a read
// that the rules refuse 403, as the record's GET does, whether the rule
// looks at the name or at the data, and whether the record exists; a
// record the user may read streams, even before it exists.
func TestPermRecordStreamRefused(t *testing.T) {
	srv := startPermServer(t)
	put(t, srv.URL, "secret/b", `{"s":"SECRET"}`)
	put(t, srv.URL, "doc/closed", `{"public":false}`)
	for _, name := range []string{"secret/b", "secret/missing", "doc/closed", "doc/closed?path=public"} {
		req, _ := http.NewRequest("GET", srv.URL+"/records/"+name, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"PERMISSION_DENIED"`) {
			t.Errorf("stream of %s: %d %s, want 403 PERMISSION_DENIED", name, resp.StatusCode, body)
		}
	}
	read := rawStream(t, srv.URL+"/records/pub/missing")
	waitFor(t, read, `event: snapshot`, `"version":0`)
}

// TestPermStreamCollection: a collection shows only the records its user
// may read, neither the data nor the names of the others, and delete
// frames only for records that could be read before.
func TestPermStreamCollection(t *testing.T) {
	srv := startPermServer(t)
	put(t, srv.URL, "doc/a", `{"public":true}`)
	put(t, srv.URL, "doc/hidden-1", `{"public":false}`)
	read := rawStream(t, srv.URL+"/stream?record=doc/*")
	waitFor(t, read, `{"record":"doc/*","count":1}`)
	put(t, srv.URL, "doc/hidden-2", `{"public":false}`)
	do(t, "DELETE", srv.URL+"/records/doc/hidden-1", "", "")
	put(t, srv.URL, "doc/b", `{"public":true}`)
	do(t, "DELETE", srv.URL+"/records/doc/b", "", "")
	got := waitFor(t, read, `"name":"doc/b"`, `event: delete`)
	if strings.Contains(got, "hidden") {
		t.Errorf("the collection revealed a record it may not read:\n%s", got)
	}
	if n := strings.Count(got, "event: delete"); n != 1 {
		t.Errorf("%d delete frames, want 1 (doc/b's):\n%s", n, got)
	}
}

// TestPermEventSubscribeOnPayload: a subscribe rule that reads data is
// decided on each event's payload: the events it refuses are left out,
// with no denied frame, and the subscription goes on.
func TestPermEventSubscribeOnPayload(t *testing.T) {
	file := writeRules(t, `
event:
  "feed/$x":
    publish: true
    subscribe: "data.public == true"
`)
	srv := startServer(t, map[string]string{"PERMISSIONS_FILE": file})
	read := rawStream(t, srv.URL+"/stream?event=feed/a")
	waitFor(t, read, "event: ready")
	publishEvent(t, srv.URL, "feed/a", `{"public":true,"v":"shown"}`)
	publishEvent(t, srv.URL, "feed/a", `{"public":false,"v":"SECRET"}`)
	publishEvent(t, srv.URL, "feed/a", `{"public":true,"v":"after"}`)
	got := waitFor(t, read, `"shown"`, `"after"`)
	if strings.Contains(got, "SECRET") || strings.Contains(got, "denied") {
		t.Errorf("the stream carried a refused event or a denial:\n%s", got)
	}
}
