package handlers_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBodyTooLarge: a body up to MAX_BODY_BYTES is read; a longer one is
// 413 PAYLOAD_TOO_LARGE on every route that takes a body, whether its
// Content-Length says so at once or it is sent chunked, and nothing is
// written.
func TestBodyTooLarge(t *testing.T) {
	const limit = 64
	srv, _ := newServer(t, options{maxBody: limit})
	fits := `"` + strings.Repeat("a", limit-2) + `"`
	if resp, body := send(t, "PUT", srv.URL+"/records/fits", "application/json", fits); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT of %d bytes: %d %s", len(fits), resp.StatusCode, body)
	}
	big := `"` + strings.Repeat("a", limit-1) + `"`
	for _, r := range [][2]string{
		{"PUT", "/records/big"},
		{"PATCH", "/records/big"},
		{"POST", "/batch"},
		{"POST", "/events/big"},
		{"POST", "/stream/s/subscriptions"},
		{"POST", "/rpc/big"},
		{"POST", "/rpc-requests/id"},
	} {
		resp, body := send(t, r[0], srv.URL+r[1], "application/json", big)
		wantProblem(t, r[0]+" "+r[1], resp, body, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	}
	// Without a length the body is cut while read (io.MultiReader hides
	// the length from net/http, which then sends it chunked).
	for _, r := range [][2]string{{"PUT", "/records/big"}, {"POST", "/events/big"}} {
		req, _ := http.NewRequest(r[0], srv.URL+r[1], io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProblem(t, r[0]+" "+r[1]+" chunked", resp, body, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	}
	if resp, body := send(t, "GET", srv.URL+"/records/big", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /records/big: %d %s", resp.StatusCode, body)
	}
}

// slowPut sends the head of a PUT and one byte of its body, and nothing
// more; it returns a reader of the answer.
func slowPut(t *testing.T, url string) *bufio.Reader {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "PUT /records/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
	return bufio.NewReader(c)
}

// wantSlowAnswer reads the answer to slowPut: 400 INVALID_JSON, from
// least to most after start.
func wantSlowAnswer(t *testing.T, r *bufio.Reader, start time.Time, least, most time.Duration) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer after %s: %v", time.Since(start), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantProblem(t, "slow body", resp, body, http.StatusBadRequest, "INVALID_JSON")
	if d := time.Since(start); d < least || d > most {
		t.Errorf("slow body answered after %s, want %s to %s", d, least, most)
	}
}

// TestBodyTimeout: a body that does not arrive within BODY_TIMEOUT is 400
// INVALID_JSON, and nothing is written.
func TestBodyTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	srv, _ := newServer(t, options{bodyTimeout: timeout})
	start := time.Now()
	wantSlowAnswer(t, slowPut(t, srv.URL), start, timeout, 5*time.Second)
	if resp, body := send(t, "GET", srv.URL+"/records/slow", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /records/slow: %d %s", resp.StatusCode, body)
	}
}

// TestBodyDrain: once the server drains, a body still arriving has a
// second more, whatever BODY_TIMEOUT says.
func TestBodyDrain(t *testing.T) {
	srv, d := newServer(t, options{bodyTimeout: time.Minute})
	r := slowPut(t, srv.URL)
	time.Sleep(100 * time.Millisecond) // the request has reached its handler
	start := time.Now()
	d.Bodies.Drain()
	wantSlowAnswer(t, r, start, 0, 5*time.Second)
}
