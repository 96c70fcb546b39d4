package handlers_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/handlers"
)

// TestDrainEndsStreams: when the hub drains, an open stream ends with a
// retry: line after its ready frame, whether the writer pool serves it
// (HTTP/1, the connection taken over) or its own goroutine does (HTTP/2);
// then /readyz answers 503 and a new stream 503 UNAVAILABLE with
// Retry-After, while other requests are still served.
func TestDrainEndsStreams(t *testing.T) {
	srv, d := newServer(t, options{})
	h2 := httptest.NewUnstartedServer(handlers.Routes(d))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)

	type stream struct {
		name  string
		lines chan string
	}
	var streams []stream
	for _, c := range []struct {
		name   string
		url    string
		client *http.Client
	}{
		{"HTTP/1 (the writer pool)", srv.URL, http.DefaultClient},
		{"HTTP/2 (Stream.Run)", h2.URL, h2.Client()},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/stream?record=doc", nil)
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: GET /stream: %d", c.name, resp.StatusCode)
		}
		s := stream{c.name, make(chan string, 100)}
		go func() {
			defer close(s.lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				s.lines <- sc.Text()
			}
		}()
		for line := range s.lines { // up to the ready frame, whose retry: is STREAM_RETRY's
			if line == "event: ready" {
				break
			}
		}
		streams = append(streams, s)
	}

	d.Hub.Drain()
	for _, s := range streams {
		var retry []string
		for line := range s.lines { // to the stream's end
			if strings.HasPrefix(line, "retry:") {
				retry = append(retry, line)
			}
		}
		// The test hub's drain hint is its Retry: 1 s.
		if len(retry) != 1 || retry[0] != "retry: 1000" {
			t.Errorf("%s: the stream ended with the retry lines %q, want [\"retry: 1000\"]", s.name, retry)
		}
	}

	resp, body := send(t, http.MethodGet, srv.URL+"/readyz", "", "")
	wantProblem(t, "GET /readyz while draining", resp, body, http.StatusServiceUnavailable, "UNAVAILABLE")
	resp, body = send(t, http.MethodGet, srv.URL+"/stream?record=doc", "", "")
	wantProblem(t, "GET /stream while draining", resp, body, http.StatusServiceUnavailable, "UNAVAILABLE")
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("GET /stream while draining: Retry-After %q, want \"1\"", got)
	}
	resp, body = send(t, http.MethodGet, srv.URL+"/records/doc", "", "", "Accept", "text/event-stream")
	wantProblem(t, "GET /records/doc as a stream while draining", resp, body, http.StatusServiceUnavailable, "UNAVAILABLE")
	if resp, body := send(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `{"a":1}`); resp.StatusCode/100 != 2 {
		t.Errorf("PUT /records/doc while draining: %d %s, want it served", resp.StatusCode, body)
	}
}
