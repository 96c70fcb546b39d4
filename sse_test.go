package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// frame is one SSE frame as a client sees it.
type frame struct {
	ID    string
	Event string
	Data  string
}

// sseClient reads a stream frame by frame. It parses the wire format
// itself so that tests see exactly what the server sent (ids, retry,
// comments), which a higher-level client would hide.
type sseClient struct {
	resp   *http.Response
	frames chan frame
	cancel context.CancelFunc
	LastID string
}

// openSSE opens url (relative to the server) as an event stream, with a
// Last-Event-ID when lastID is set, and closes it when the test ends.
func openSSE(t testing.TB, url, lastID string) *sseClient {
	t.Helper()
	c, err := dialSSE(url, lastID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// dialSSE opens a stream, returning the error instead of failing the
// test (for goroutines, and for retries during an outage).
func dialSSE(url, lastID string) (*sseClient, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("open %s: %d %s", url, resp.StatusCode, b)
	}
	c := &sseClient{resp: resp, frames: make(chan frame, 1<<16), cancel: cancel, LastID: lastID}
	go c.read()
	return c, nil
}

func (c *sseClient) read() {
	defer close(c.frames)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var f frame
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if f.Event != "" || f.Data != "" {
				c.frames <- f
			}
			f = frame{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			f.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			f.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			f.Data = line[6:]
		}
	}
}

// Close ends the connection.
func (c *sseClient) Close() {
	c.cancel()
	c.resp.Body.Close()
}

// Next returns the next frame, failing the test after timeout. A frame
// with an id moves LastID, as a browser does.
func (c *sseClient) Next(t testing.TB, timeout time.Duration) frame {
	t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			t.Fatal("stream ended")
		}
		if f.ID != "" {
			c.LastID = f.ID
		}
		return f
	case <-time.After(timeout):
		t.Fatalf("no frame in %v", timeout)
	}
	return frame{}
}

// TryNext returns the next frame, or false after timeout.
func (c *sseClient) TryNext(timeout time.Duration) (frame, bool) {
	select {
	case f, ok := <-c.frames:
		if ok && f.ID != "" {
			c.LastID = f.ID
		}
		return f, ok
	case <-time.After(timeout):
		return frame{}, false
	}
}

// Expect returns the next frame and checks its event name.
func (c *sseClient) Expect(t testing.TB, event string) frame {
	t.Helper()
	f := c.Next(t, 5*time.Second)
	if f.Event != event {
		t.Fatalf("got %s frame %s, want %s", f.Event, f.Data, event)
	}
	return f
}

// decode unmarshals a frame's data.
func (f frame) decode(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(f.Data), &m); err != nil {
		t.Fatalf("frame data %q: %v", f.Data, err)
	}
	return m
}
