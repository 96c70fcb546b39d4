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

// TestManyFramesSpill: a start or a change that makes many frames (path
// subscriptions of many large fields of one record) is written out as it
// goes, each write at most about the stream's buffer, rather than
// gathered whole; a client that reads gets every frame. The same
// subscription named twice is one: one snapshot, one frame a change.
func TestManyFramesSpill(t *testing.T) {
	const (
		buffer = 16 << 10
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
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
	expect := func(event, v string) {
		t.Helper()
		seen := map[string]bool{}
		for range fields {
			got := next(t, frames, true)
			var d struct{ Path, Data string }
			if !strings.HasPrefix(got, event+" ") || json.Unmarshal([]byte(got[len(event)+1:]), &d) != nil || !strings.HasPrefix(d.Data, v+"xxx") || seen[d.Path] {
				t.Fatalf("got %.80s, want a %s frame of a field not seen yet, with %s", got, event, v)
			}
			seen[d.Path] = true
		}
	}
	expect("snapshot", "a")
	putRaw(t, f.store, "big", value("b"))
	expect("record", "b")
	if got := conn.largest(); got > buffer+size+1024 {
		t.Errorf("the largest write was %d bytes, want at most the buffer (%d) and a frame", got, buffer)
	}
	if realtime.StreamEnded(s) {
		t.Errorf("the stream ended: %v", realtime.StreamErr(s))
	}
}
