package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// getStream asks for a stream and returns the answer; a stream that opens
// is read for a moment and closed.
func getStream(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Timeout: time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body) // an open stream ends at the timeout
	return resp.StatusCode, resp.Header, b
}

// TestMaxSubscriptionsPerStream: past MAX_SUBSCRIPTIONS_PER_STREAM,
// opening a stream and adding a subscription are 429 LIMIT_EXCEEDED, and
// the stream keeps the subscriptions it had.
func TestMaxSubscriptionsPerStream(t *testing.T) {
	srv := startServer(t, map[string]string{"MAX_SUBSCRIPTIONS_PER_STREAM": "2"})
	limited := func(what string, st int, h http.Header, b []byte) {
		t.Helper()
		if st != http.StatusTooManyRequests || h.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(string(b), `"code":"LIMIT_EXCEEDED"`) {
			t.Fatalf("%s: %d %s %s, want 429 LIMIT_EXCEEDED", what, st, h.Get("Content-Type"), b)
		}
	}
	st, h, b := getStream(t, srv.URL+"/stream?event=a&event=b&event=c")
	limited("open with 3 subscriptions", st, h, b)

	c := openSSE(t, srv.URL+"/stream?event=a&event=b", "")
	ready := c.Expect(t, "ready")
	id := ready.Decode(t)["stream"].(string)
	subs := srv.URL + "/stream/" + id + "/subscriptions"
	st, h, b = do(t, http.MethodPost, subs, "application/json", `{"event":"c"}`)
	limited("add a third subscription", st, h, b)
	if st, _, b := do(t, http.MethodPost, subs, "application/json", `{"event":"a"}`); st != http.StatusNoContent {
		t.Fatalf("add a subscription the stream has: %d %s", st, b)
	}
	c.Close()

	// The stream resumed: the subscriptions it had, no more.
	c = openSSE(t, srv.URL+"/stream?event=a&event=b", ready.ID)
	got := c.Expect(t, "ready").Decode(t)
	if got["stream"] != id || len(got["subscriptions"].([]any)) != 2 {
		t.Fatalf("ready after resume: %v", got)
	}
}
