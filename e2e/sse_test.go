package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
)

// frame is one SSE frame as a client sees it.
type frame struct {
	ID    string
	Event string
	Data  string
}

// sseClient reads a stream frame by frame: r3labs/sse's reader splits the
// stream into events, and parseFrame keeps each event's own id, which
// r3labs/sse's Client would replace by the last id seen.
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
	events := sse.NewEventStreamReader(c.resp.Body, 4<<20)
	for {
		raw, err := events.ReadEvent()
		if err != nil {
			return
		}
		if f := parseFrame(raw); f.Event != "" || f.Data != "" { // not a heartbeat
			c.frames <- f
		}
	}
}

// parseFrame reads the fields of one event: its own id (not the last one
// seen, so that tests see which frames carry one), its name and its data
// lines. Comments and retry are not part of a frame.
func parseFrame(raw []byte) frame {
	var f frame
	var data []string
	for _, line := range strings.Split(string(raw), "\n") {
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			data = append(data, value)
		}
	}
	f.Data = strings.Join(data, "\n")
	return f
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
