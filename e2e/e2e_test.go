package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func put(t testing.TB, base, name, body string) {
	t.Helper()
	if st, _, b := do(t, http.MethodPut, base+"/records/"+name, "application/json", body); st != 200 && st != 201 {
		t.Fatalf("PUT %s: %d %s", name, st, b)
	}
}

func publishEvent(t testing.TB, base, name, body string) string {
	t.Helper()
	st, _, b := do(t, http.MethodPost, base+"/events/"+name, "application/json", body)
	if st != http.StatusAccepted {
		t.Fatalf("POST /events/%s: %d %s", name, st, b)
	}
	var out struct{ ID string }
	json.Unmarshal(b, &out)
	return out.ID
}

// TestStreamVersionOrder: a stream sees each record's snapshot, then every
// change in version order, while 8 writers race on the same records.
func TestStreamVersionOrder(t *testing.T) {
	srv := startServer(t, nil)
	const writers, perWriter, records = 8, 50, 4
	var q []string
	for r := range records {
		q = append(q, "record=r"+strconv.Itoa(r))
	}
	c := openSSE(t, srv.URL+"/stream?"+strings.Join(q, "&"), "")
	c.Expect(t, "ready")
	last := map[string]float64{}
	for range records {
		m := c.Expect(t, "snapshot").Decode(t)
		if m["version"] != 0.0 || m["data"] != nil {
			t.Fatalf("snapshot of a missing record: %v", m)
		}
		last[m["name"].(string)] = 0
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				name := "r" + strconv.Itoa((w+i)%records)
				if i%2 == 0 {
					put(t, srv.URL, name, fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				} else {
					put(t, srv.URL, name+"?path=w"+strconv.Itoa(w), strconv.Itoa(i))
				}
			}
		}()
	}
	wg.Wait()
	for n := 0; n < writers*perWriter; n++ {
		f := c.Expect(t, "record")
		m := f.Decode(t)
		name, v := m["name"].(string), m["version"].(float64)
		if v != last[name]+1 {
			t.Fatalf("%s: version %v after %v", name, v, last[name])
		}
		last[name] = v
	}
	total := 0.0
	for _, v := range last {
		total += v
	}
	if total != writers*perWriter {
		t.Fatalf("saw %v versions, want %d", total, writers*perWriter)
	}
}

// TestResumeNoGapNoDuplicate reconnects a stream 100 times with
// Last-Event-ID while writers and publishers run: across all connections
// every record version and every event arrives exactly once, in order.
func TestResumeNoGapNoDuplicate(t *testing.T) {
	srv := startServer(t, nil)
	const writers, maxOps = 4, 3000
	url := srv.URL + "/stream?record=a&record=b&event=ev/*"
	readerDone, writersDone := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var published []string
	var recordWrites atomic.Int64
	// The first connection has its start position (sent with ready) before
	// anything is published: an event published before a stream's start
	// is rightly never sent to it.
	c := openSSE(t, url, "")
	first := c.Expect(t, "ready")
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < maxOps; i++ {
				select {
				case <-readerDone:
					return
				default:
				}
				switch i % 3 {
				case 0:
					put(t, srv.URL, "a?path=w"+strconv.Itoa(w), strconv.Itoa(i))
					recordWrites.Add(1)
				case 1:
					put(t, srv.URL, "b", strconv.Itoa(i))
					recordWrites.Add(1)
				default:
					id := publishEvent(t, srv.URL, "ev/"+strconv.Itoa(w), strconv.Itoa(i))
					mu.Lock()
					published = append(published, id)
					mu.Unlock()
				}
			}
		}()
	}
	go func() { wg.Wait(); close(writersDone) }()

	versions := map[string]float64{}
	events := map[string]int{}
	lastSeq := -1
	lastID := ""
	see := func(f frame) {
		if f.ID != "" {
			seq, _ := strconv.Atoi(f.ID[strings.LastIndexByte(f.ID, '-')+1:])
			if f.Event != "ready" && seq <= lastSeq {
				t.Fatalf("frame id %s not after %d", f.ID, lastSeq)
			}
			lastSeq = seq
		}
		switch f.Event {
		case "snapshot":
			if lastID != "" {
				t.Fatalf("snapshot after a resume: %s", f.Data)
			}
			m := f.Decode(t)
			versions[m["name"].(string)] = m["version"].(float64)
		case "record":
			m := f.Decode(t)
			name, v := m["name"].(string), m["version"].(float64)
			if v != versions[name]+1 {
				t.Fatalf("%s: version %v after %v (gap or duplicate)", name, v, versions[name])
			}
			versions[name] = v
		case "event":
			events[f.Decode(t)["id"].(string)]++
		case "reset":
			t.Fatalf("unexpected reset: %s", f.Data)
		}
	}
	see(first)
	for i := range 100 {
		if i > 0 {
			c = openSSE(t, url, lastID)
			see(c.Expect(t, "ready"))
		}
		// A client cut off before its start's id (on the last snapshot)
		// starts over and is owed no event from before its new start: read
		// the first start to its end.
		for c.LastID == "" {
			see(c.Next(t, 5*time.Second))
		}
		for n := rand.IntN(20); n > 0; n-- {
			see(c.Next(t, 5*time.Second))
		}
		lastID = c.LastID
		c.Close()
	}
	close(readerDone)
	<-writersDone
	// Read what is left on one last connection.
	c = openSSE(t, url, lastID)
	see(c.Expect(t, "ready"))
	for {
		got := 0.0
		for _, v := range versions {
			got += v
		}
		if int64(got) == recordWrites.Load() && len(events) == len(published) {
			break
		}
		f, ok := c.TryNext(5 * time.Second)
		if !ok {
			missing := []string{}
			for _, id := range published {
				if events[id] == 0 {
					missing = append(missing, id)
				}
			}
			t.Fatalf("no frame in 5s with %v of %d record writes and %d of %d events seen (missing %v; resumed from %s)",
				got, recordWrites.Load(), len(events), len(published), missing, lastID)
		}
		see(f)
	}
	for _, id := range published {
		if events[id] != 1 {
			t.Errorf("event %s arrived %d times", id, events[id])
		}
	}
	if len(events) != len(published) || len(published) == 0 {
		t.Errorf("saw %d events, published %d", len(events), len(published))
	}
	t.Logf("%d record writes and %d events over 101 connections", recordWrites.Load(), len(published))
}

// TestRestartKeepsEverything restarts the server on the same DATA_DIR.
func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, map[string]string{"DATA_DIR": dir})
	for i := range 50 {
		put(t, srv.URL, "keep/"+strconv.Itoa(i), fmt.Sprintf(`{"i":%d}`, i))
	}
	put(t, srv.URL, "keep/0?path=x.y", `"deep"`)
	c := openSSE(t, srv.URL+"/stream?record=keep/1", "")
	c.Expect(t, "ready")
	c.Expect(t, "snapshot")
	put(t, srv.URL, "keep/1", `"v2"`)
	c.Expect(t, "record")
	token := c.LastID
	c.Close()
	srv.Stop(t)

	srv = startServer(t, map[string]string{"DATA_DIR": dir})
	for i := range 50 {
		st, _, b := do(t, http.MethodGet, srv.URL+"/records/keep/"+strconv.Itoa(i), "", "")
		if st != 200 {
			t.Fatalf("keep/%d after restart: %d %s", i, st, b)
		}
	}
	st, _, b := do(t, http.MethodGet, srv.URL+"/records/keep/0?path=x.y", "", "")
	if st != 200 || !strings.Contains(string(b), `"data":"deep"`) || !strings.Contains(string(b), `"version":2`) {
		t.Fatalf("keep/0 after restart: %d %s", st, b)
	}
	// The stream resumes on the new process: same id, next change only.
	put(t, srv.URL, "keep/1", `"v3"`)
	c = openSSE(t, srv.URL+"/stream?record=keep/1", token)
	ready := c.Expect(t, "ready").Decode(t)
	if want := token[:strings.LastIndexByte(token, '-')]; ready["stream"] != want {
		t.Fatalf("resumed stream id %v, want %s", ready["stream"], want)
	}
	if m := c.Expect(t, "record").Decode(t); m["data"] != "v3" || m["version"] != 3.0 {
		t.Fatalf("after resume: %v", m)
	}
}

// TestSlowConsumerIsCut: a subscriber that never reads is disconnected
// once its queue is full, and the others get every event meanwhile.
func TestSlowConsumerIsCut(t *testing.T) {
	srv := startServer(t, map[string]string{
		"STREAM_BUFFER_BYTES": "1048576", "MAX_BODY_BYTES": "65536", "MAX_RECORD_BYTES": "65536",
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	slow, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(slow, "GET /stream?event=big HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", host)
	fast := openSSE(t, srv.URL+"/stream?event=big", "")
	fast.Expect(t, "ready")
	waitMetric(t, srv.URL, "switchboard_streams_open", 2)

	payload := `"` + strings.Repeat("x", 16<<10) + `"`
	const n = 1000 // 16 MB: more than any socket buffers hold
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			publishEvent(t, srv.URL, "big", payload)
		}
	}()
	for i := range n {
		if f := fast.Next(t, 10*time.Second); f.Event != "event" {
			t.Fatalf("frame %d: %s", i, f.Event)
		}
	}
	<-done
	waitMetric(t, srv.URL, "switchboard_slow_disconnects_total", 1)
	waitMetric(t, srv.URL, "switchboard_streams_open", 1)
}

// waitMetric waits until a metric of /metrics has the value want.
func waitMetric(t testing.TB, base, name string, want float64) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, _, b := do(t, http.MethodGet, base+"/metrics", "", "")
		got = metricValue(string(b), name)
		if got == want {
			return
		}
	}
	t.Fatalf("%s = %v, want %v", name, got, want)
}

func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
