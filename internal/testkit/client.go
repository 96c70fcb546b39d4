package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
)

// Frame is one SSE frame as a client sees it: its own id, its event name
// and its data.
type Frame struct{ ID, Event, Data string }

// Client reads a stream frame by frame: r3labs/sse's reader splits the
// stream into events, and ParseFrame keeps each event's own id, which
// r3labs/sse's Client would replace by the last id seen.
type Client struct {
	resp   *http.Response
	frames chan Frame
	cancel context.CancelFunc
	closed chan struct{} // closed by Close: the reader stops
	// LastID is the last id seen by Next and TryNext, as a browser keeps it.
	LastID string
}

// Dial opens url as an event stream, with a Last-Event-ID when lastID is
// set and the headers given (name, value, ...). Up to 65,536 frames wait
// to be read (3 MiB of channel).
func Dial(url, lastID string, headers ...string) (*Client, error) {
	return dial(url, lastID, 1<<16, headers...)
}

// dial is Dial with room for buffer frames: a Tracker, which reads as
// frames come, takes less, as the fault suite opens many.
func dial(url, lastID string, buffer int, headers ...string) (*Client, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
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
		return nil, fmt.Errorf("open %s: %d %.300s", url, resp.StatusCode, b)
	}
	c := &Client{resp: resp, frames: make(chan Frame, buffer), cancel: cancel, closed: make(chan struct{}), LastID: lastID}
	go c.read()
	return c, nil
}

func (c *Client) read() {
	defer close(c.frames)
	events := sse.NewEventStreamReader(c.resp.Body, 4<<20)
	for {
		raw, err := events.ReadEvent()
		if err != nil {
			return
		}
		f := ParseFrame(raw)
		if f.Event == "" && f.Data == "" { // a heartbeat
			continue
		}
		select {
		case c.frames <- f:
		case <-c.closed:
			return
		}
	}
}

// ParseFrame reads the fields of one event: its own id (not the last one
// seen, so that tests see which frames carry one), its name and its data
// lines. Comments and retry are not part of a frame.
func ParseFrame(raw []byte) Frame {
	var f Frame
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

// Response is the stream's HTTP response, for its status and headers.
func (c *Client) Response() *http.Response { return c.resp }

// Frames is the frames as they arrive; it is closed when the stream ends.
func (c *Client) Frames() <-chan Frame { return c.frames }

// Close ends the connection. Frames already read stay readable.
func (c *Client) Close() {
	select {
	case <-c.closed:
		return
	default:
	}
	close(c.closed)
	c.cancel()
	c.resp.Body.Close()
}

// Next returns the next frame, failing the test when the stream ends or
// after timeout. A frame with an id moves LastID.
func (c *Client) Next(t testing.TB, timeout time.Duration) Frame {
	t.Helper()
	f, ok, timedOut := c.next(timeout)
	switch {
	case timedOut:
		t.Fatalf("no frame in %v", timeout)
	case !ok:
		t.Fatal("stream ended")
	}
	return f
}

// TryNext returns the next frame, or false when the stream ends or after
// timeout.
func (c *Client) TryNext(timeout time.Duration) (Frame, bool) {
	f, ok, _ := c.next(timeout)
	return f, ok
}

// Expect returns the next frame (within 5 s) and checks its event name.
func (c *Client) Expect(t testing.TB, event string) Frame {
	t.Helper()
	f := c.Next(t, 5*time.Second)
	if f.Event != event {
		t.Fatalf("got %s frame %s, want %s", f.Event, f.Data, event)
	}
	return f
}

// Decode unmarshals a frame's data, failing the test when it is not a
// JSON object.
func (f Frame) Decode(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(f.Data), &m); err != nil {
		t.Fatalf("frame data %q: %v", f.Data, err)
	}
	return m
}

func (c *Client) next(timeout time.Duration) (f Frame, ok, timedOut bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case f, ok = <-c.frames:
		if ok && f.ID != "" {
			c.LastID = f.ID
		}
		return f, ok, false
	case <-timer.C:
		return Frame{}, false, true
	}
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
