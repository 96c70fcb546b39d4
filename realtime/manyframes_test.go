package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// countingConn records the largest single write the writer pool makes.
type countingConn struct {
	net.Conn
	mu  sync.Mutex
	max int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.max = max(c.max, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) largest() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

// TestManyFrames: a start that makes many frames (path subscriptions of
// many large fields of one record) is written out as it goes, each write
// at most about the stream's buffer, rather than gathered whole: a client
// that reads gets every snapshot. A change never makes more frames for a
// stream than its buffer holds: the subscriptions past it are denied
// (PAYLOAD_TOO_LARGE), in order, and the others go on. The same
// subscription named twice is one: one snapshot, one frame a change.
func TestManyFrames(t *testing.T) {
	const (
		buffer = 64 << 10
		fields = 20
		size   = 8 << 10
	)
	f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: buffer})
	value := func(v string) json.RawMessage {
		m := map[string]string{}
		for i := range fields {
			m[fmt.Sprint("f", i)] = v + strings.Repeat("x", size)
		}
		b, _ := json.Marshal(m)
		return b
	}
	putRaw(t, f.store, "big", value("a"))
	var subs []api.Subscription
	for i := range fields {
		subs = append(subs, api.Subscription{Record: "big", Path: fmt.Sprint("f", i)})
	}
	subs = append(subs, subs[3], subs[0]) // named twice: one subscription
	s, err := f.hub.Open(context.Background(), api.User{ID: "u"}, subs, "")
	if err != nil {
		t.Fatal(err)
	}
	server, client := tcpPair(t)
	defer server.Close()
	defer client.Close()
	frames := readFrames(client) // reads as it comes, from now on
	conn := &countingConn{Conn: server}
	if err := s.Detach(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	ready := next(t, frames, true)
	var r struct{ Subscriptions []api.Subscription }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(ready, "ready ")), &r); err != nil || len(r.Subscriptions) != fields {
		t.Fatalf("ready frame %.200s: %d subscriptions, want %d (%v)", ready, len(r.Subscriptions), fields, err)
	}
	seen := map[string]bool{}
	for range fields {
		got := next(t, frames, true)
		var d struct{ Path, Data string }
		if !strings.HasPrefix(got, "snapshot ") || json.Unmarshal([]byte(got[len("snapshot "):]), &d) != nil || !strings.HasPrefix(d.Data, "axxx") || seen[d.Path] {
			t.Fatalf("got %.80s, want the snapshot of a field not seen yet", got)
		}
		seen[d.Path] = true
	}
	if got := conn.largest(); got > buffer+size+1024 {
		t.Errorf("the largest write of the start was %d bytes, want at most the buffer (%d) and a frame", got, buffer)
	}

	// A change of every field: record frames in the subscriptions' order
	// up to the buffer, then denied frames for the rest.
	change := func(v string, kept int) int {
		t.Helper()
		putRaw(t, f.store, "big", value(v))
		records, bytes := 0, 0
		for i := range kept {
			got := next(t, frames, true)
			path := fmt.Sprint("f", i)
			var d struct {
				Path, Data   string
				Subscription api.Subscription
				Code         string
			}
			switch event, data, _ := strings.Cut(got, " "); {
			case json.Unmarshal([]byte(data), &d) != nil:
				t.Fatalf("frame %.80s", got)
			case event == "record" && d.Path == path && strings.HasPrefix(d.Data, v+"xxx") && records == i:
				records++
				bytes += len(data)
			case event == "denied" && d.Subscription.Path == path && d.Code == "PAYLOAD_TOO_LARGE" && records > 0:
			default:
				t.Fatalf("frame %d of the change: %.100s, want the record frame of %s, or after some its denied frame", i, got, path)
			}
		}
		if bytes > buffer || records == kept && kept == fields {
			t.Errorf("the change wrote %d bytes of %d record frames for a buffer of %d", bytes, records, buffer)
		}
		return records
	}
	kept := change("b", fields)
	if again := change("c", kept); again != kept {
		t.Errorf("the next change: %d record frames, want %d (the subscriptions that went on)", again, kept)
	}
	if realtime.StreamEnded(s) {
		t.Errorf("the stream ended: %v", realtime.StreamErr(s))
	}
	t.Logf("%d of %d path subscriptions went on", kept, fields)
}
