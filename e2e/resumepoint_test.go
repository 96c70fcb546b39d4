package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// splitToken splits a resume token "<stream id>-<position>".
func splitToken(t *testing.T, tok string) (string, int64) {
	t.Helper()
	i := strings.LastIndexByte(tok, '-')
	pos, err := strconv.ParseInt(tok[i+1:], 10, 64)
	if i <= 0 || err != nil {
		t.Fatalf("resume token %q", tok)
	}
	return tok[:i], pos
}

// TestResumeAhead: a resume point beyond the head of the change log was
// never sent; it gets a reset that says so (not that it is too old), and
// fresh snapshots.
func TestResumeAhead(t *testing.T) {
	srv := startServer(t, nil)
	resumeAhead(t, srv.URL, srv.URL)
}

// resumeAhead opens a stream on server a and resumes it on server b from
// a point ahead of the log.
func resumeAhead(t *testing.T, a, b string) {
	put(t, a, "r", `1`)
	c := openSSE(t, a+"/stream?record=r", "")
	c.Expect(t, "ready")
	id, pos := splitToken(t, c.Expect(t, "snapshot").ID)
	c.Close()

	c = openSSE(t, b+"/stream?record=r", id+"-"+strconv.FormatInt(pos+1000, 10))
	if got := c.Expect(t, "ready").Decode(t)["stream"]; got != id {
		t.Fatalf("stream %v, want %s", got, id)
	}
	if reason := c.Expect(t, "reset").Decode(t)["reason"].(string); !strings.Contains(reason, "ahead") {
		t.Fatalf("reset reason %q", reason)
	}
	if m := c.Expect(t, "snapshot").Decode(t); m["version"] != 1.0 {
		t.Fatalf("snapshot: %v", m)
	}
}

// TestResumeBeforeStart: a resume point before the stream's own start
// (position 0 with a real stream id) was never sent either. It used to
// replay the whole log without a snapshot; it is now a fresh start of the
// same stream: its id and every subscription it has, a reset, snapshots,
// and no replayed frame.
func TestResumeBeforeStart(t *testing.T) {
	srv := startServer(t, nil)
	resumeBeforeStart(t, srv.URL, srv.URL)
}

// resumeBeforeStart opens a stream on server a and resumes it on server b
// from position 0.
func resumeBeforeStart(t *testing.T, a, b string) {
	put(t, a, "r", `1`)
	put(t, a, "r", `2`)
	put(t, a, "added", `1`)
	publishEvent(t, a, "e", `"before"`)
	c := openSSE(t, a+"/stream?record=r&event=e", "")
	c.Expect(t, "ready")
	id, _ := splitToken(t, c.Expect(t, "snapshot").ID)
	if st, _, body := do(t, http.MethodPost, a+"/stream/"+id+"/subscriptions", "application/json", `{"record":"added"}`); st != http.StatusNoContent {
		t.Fatalf("add: %d %s", st, body)
	}
	c.Expect(t, "snapshot")
	put(t, a, "r", `3`)
	c.Expect(t, "record")
	c.Close()

	c = openSSE(t, b+"/stream?record=r&event=e", id+"-0")
	ready := c.Expect(t, "ready").Decode(t)
	if ready["stream"] != id || len(ready["subscriptions"].([]any)) != 3 {
		t.Fatalf("ready: %v", ready)
	}
	if reason := c.Expect(t, "reset").Decode(t)["reason"].(string); !strings.Contains(reason, "start") {
		t.Fatalf("reset reason %q", reason)
	}
	want := map[string]float64{"r": 3, "added": 1} // their data now
	for range len(want) {
		m := c.Expect(t, "snapshot").Decode(t)
		if m["data"] != want[m["name"].(string)] {
			t.Fatalf("snapshot: %v", m)
		}
		delete(want, m["name"].(string))
	}
	if f, ok := c.TryNext(300 * time.Millisecond); ok {
		t.Fatalf("after the snapshots: %s %s", f.Event, f.Data)
	}
}

// TestPGResumePoints: the same over Postgres, opened on one instance and
// resumed on another. The head is read from the shared database, so a
// point sent by any instance is never ahead of it.
func TestPGResumePoints(t *testing.T) {
	_, srv := pgServers(t, 2, nil)
	t.Run("ahead", func(t *testing.T) { resumeAhead(t, srv[0].URL, srv[1].URL) })
	t.Run("before start", func(t *testing.T) { resumeBeforeStart(t, srv[0].URL, srv[1].URL) })
}
