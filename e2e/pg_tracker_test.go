package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/realtime"
)

// pgClient serves the requests of goroutines, which must not stop the
// test themselves: bounded time, idle connections for many writers.
var pgClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256},
}

// tryDo sends a request with headers (name, value, ...) and returns the
// status and body, or the error.
func tryDo(method, url, contentType, body string, headers ...string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := pgClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// closeSSE ends a connection and lets its reader finish.
func closeSSE(c *sseClient) {
	c.Close()
	go func() {
		for range c.frames {
		}
	}()
}

// pgTracker follows one stream across connections and instances. It
// checks every frame as it arrives (ids after each other, versions of a
// record one after the other, the same stream id on every resume, no
// snapshot or reset after a resume) and keeps the changes delivered, to
// compare with the log at the end. It is safe for concurrent use.
type pgTracker struct {
	name    string
	query   string // the stream's path and query
	records map[string]bool
	events  []string // exact names, or "prefix/*"
	target  atomic.Int64

	mu       sync.Mutex
	id       string // the stream's id
	start    int64  // the position its first connection started at
	lastID   string // the resume token: the last id seen
	got      []logEntry
	versions map[string]int64
	conns    int
	err      error    // the first violation
	history  []string // connections and their first frames, for failures
}

func newTracker(name string, records, events []string) *pgTracker {
	k := &pgTracker{name: name, records: make(map[string]bool), events: events, versions: make(map[string]int64)}
	var q []string
	for _, r := range records {
		k.records[r] = true
		q = append(q, "record="+r)
	}
	for _, e := range events {
		q = append(q, "event="+e)
	}
	k.query = "/stream?" + strings.Join(q, "&")
	k.target.Store(-1)
	return k
}

// wants reports whether the stream's subscriptions select a change.
func (k *pgTracker) wants(e logEntry) bool {
	if e.Kind != "event" {
		return k.records[e.Name]
	}
	for _, p := range k.events {
		if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(e.Name, pre) || p == e.Name {
			return true
		}
	}
	return false
}

// open makes the first connection and reads its ready and snapshot frames.
func (k *pgTracker) open(t testing.TB, base string) *sseClient {
	t.Helper()
	k.conns = 1
	k.history = append(k.history, fmt.Sprintf("[%s open %s]", time.Now().Format("15:04:05.000"), base))
	c, err := dialSSE(base+k.query, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 1 + len(k.records) {
		f, ok := c.TryNext(10 * time.Second)
		if !ok {
			t.Fatalf("%s: no ready and snapshot frames", k.name)
		}
		if err := k.see(f); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// resume connects to base with the last id seen and reads the ready frame.
func (k *pgTracker) resume(base string) (*sseClient, error) {
	k.mu.Lock()
	last := k.lastID
	k.mu.Unlock()
	c, err := dialSSE(base+k.query, last)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.conns++
	k.history = append(k.history, fmt.Sprintf("[%s resume %s from %s]", time.Now().Format("15:04:05.000"), base, last))
	k.mu.Unlock()
	f, ok := c.TryNext(10 * time.Second)
	if !ok {
		closeSSE(c)
		return nil, fmt.Errorf("resume on %s: no ready frame", base)
	}
	if err := k.see(f); err != nil {
		closeSSE(c)
		return nil, err
	}
	return c, nil
}

// see checks one frame and keeps the change it carries. The first
// violation stays in k.err.
func (k *pgTracker) see(f frame) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.check(f)
	if err != nil {
		err = fmt.Errorf("%s (connection %d): %w", k.name, k.conns, err)
		if k.err == nil {
			k.err = err
		}
	}
	return err
}

func (k *pgTracker) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		k.err = fmt.Errorf("%s: %w", k.name, err)
	}
}

func (k *pgTracker) check(f frame) error {
	var d struct {
		Stream  string
		Name    string
		Version int64
		Op      string
		ID      string
	}
	if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
		return fmt.Errorf("%s frame %q: %v", f.Event, f.Data, err)
	}
	if f.Event == "snapshot" {
		if k.conns > 1 {
			return fmt.Errorf("snapshot on a resumed connection: %s", f.Data)
		}
		k.versions[d.Name] = d.Version
		if f.ID != "" { // the last snapshot carries the start position
			_, seq, ok := realtime.ParseToken(f.ID)
			if !ok {
				return fmt.Errorf("snapshot %s with id %q", f.Data, f.ID)
			}
			k.start, k.lastID = seq, f.ID
		}
		return nil
	}
	if f.Event == "ready" && f.ID == "" { // snapshots follow, the last with the id
		if k.id != "" {
			return fmt.Errorf("ready frame without id on a resume: %s", f.Data)
		}
		k.id = d.Stream
		return nil
	}
	id, seq, ok := realtime.ParseToken(f.ID)
	if !ok {
		return fmt.Errorf("%s frame %s with id %q", f.Event, f.Data, f.ID)
	}
	if f.Event == "ready" {
		switch {
		case k.id == "":
			k.id, k.start = d.Stream, seq
		case d.Stream != k.id || id != k.id:
			return fmt.Errorf("resumed as stream %s (id %s), want %s", d.Stream, f.ID, k.id)
		case f.ID != k.lastID:
			return fmt.Errorf("ready at %s, resumed from %s", f.ID, k.lastID)
		}
		k.lastID = f.ID
		return nil
	}
	if id != k.id {
		return fmt.Errorf("%s frame of stream %s, want %s", f.Event, f.ID, k.id)
	}
	if last := k.lastSeq(); seq <= last {
		return fmt.Errorf("%s frame %s at %d after %d: a duplicate or out of order", f.Event, f.Data, seq, last)
	}
	e := logEntry{Seq: seq, Kind: f.Event, Name: d.Name}
	switch f.Event {
	case "record", "delete":
		if d.Version != k.versions[d.Name]+1 {
			return fmt.Errorf("%s %s version %d after %d", f.Event, d.Name, d.Version, k.versions[d.Name])
		}
		// A delete's version too: created again, a record continues after it.
		e.Version, k.versions[d.Name] = d.Version, d.Version
		if f.Event != "delete" {
			e.Kind = d.Op
		}
	case "event":
		if d.ID != strconv.FormatInt(seq, 10) {
			return fmt.Errorf("event %s has id %s in frame %s", d.Name, d.ID, f.ID)
		}
	default:
		return fmt.Errorf("unexpected %s frame %s", f.Event, f.Data)
	}
	k.got = append(k.got, e)
	k.lastID = f.ID
	if len(k.history) < 400 {
		k.history = append(k.history, strconv.FormatInt(seq, 10))
	}
	return nil
}

// lastSeq is the position of the last change delivered; k.mu is held.
func (k *pgTracker) lastSeq() int64 {
	if len(k.got) == 0 {
		return k.start
	}
	return k.got[len(k.got)-1].Seq
}

// done reports whether the stream has delivered everything up to its
// target (set once the writers have stopped), or has failed.
func (k *pgTracker) done() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.target.Load()
	return k.err != nil || t >= 0 && k.lastSeq() >= t
}

// expect sets the target from the final log and returns the changes the
// stream must deliver.
func (k *pgTracker) expect(log []logEntry) []logEntry {
	var want []logEntry
	for _, e := range log {
		if e.Seq > k.start && k.wants(e) {
			want = append(want, e)
		}
	}
	if len(want) == 0 {
		k.target.Store(k.start)
	} else {
		k.target.Store(want[len(want)-1].Seq)
	}
	return want
}

// compare checks that the stream delivered exactly want, in order.
func (k *pgTracker) compare(t testing.TB, want []logEntry) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		t.Error(k.err)
	}
	for i := range min(len(k.got), len(want)) {
		if k.got[i] != want[i] {
			t.Errorf("%s: change %d delivered as %+v; the log has %+v", k.name, i, k.got[i], want[i])
			t.Logf("%s: history %s", k.name, strings.Join(k.history, " "))
			return
		}
	}
	if len(k.got) != len(want) {
		t.Errorf("%s: delivered %d changes; the log has %d for its subscriptions after %d", k.name, len(k.got), len(want), k.start)
	}
	if t.Failed() {
		t.Logf("%s: history %s", k.name, strings.Join(k.history, " "))
	}
}

// churn reads for a random while, then resumes on a random one of bases,
// again and again, until the stream has reached its target.
func (k *pgTracker) churn(c *sseClient, bases []string, abort <-chan struct{}) {
	for {
		deadline := time.Now().Add(time.Duration(rand.IntN(300)) * time.Millisecond)
		for wait := time.Until(deadline); wait > 0; wait = time.Until(deadline) {
			f, ok := c.TryNext(wait)
			if !ok {
				break
			}
			if k.see(f) != nil {
				closeSSE(c)
				return
			}
		}
		closeSSE(c)
		select {
		case <-abort:
			return
		default:
		}
		if k.done() {
			return
		}
		var err error
		if c, err = k.resume(bases[rand.IntN(len(bases))]); err != nil {
			k.fail(err)
			return
		}
	}
}

// follow reads the stream until it reaches its target. When cut is
// closed, it drops the connection and resumes on the other instance;
// a connection lost otherwise resumes on the same one. Resuming retries
// for as long as the database is away.
func (k *pgTracker) follow(c *sseClient, bases []string, cut <-chan struct{}, abort <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	cur := 0
	for {
		select {
		case f, ok := <-c.frames:
			if ok {
				if k.see(f) != nil {
					closeSSE(c)
					return
				}
				continue
			}
		case <-cut:
			cut, cur = nil, 1-cur
		case <-tick.C:
			if k.done() {
				closeSSE(c)
				return
			}
			continue
		case <-abort:
			closeSSE(c)
			return
		}
		closeSSE(c)
		for c = nil; c == nil; {
			var err error
			if c, err = k.resume(bases[cur]); err == nil {
				break
			}
			k.mu.Lock()
			failed := k.err != nil
			k.mu.Unlock()
			if failed {
				return
			}
			select {
			case <-abort:
				k.fail(fmt.Errorf("no resume after the outage: %w", err))
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}
