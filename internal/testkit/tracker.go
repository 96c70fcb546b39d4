package testkit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/realtime"
)

// Tracker follows one stream across connections and instances. It checks
// every frame as it arrives (one stream id on every connection, ids
// increasing, each record's versions one after the other, no snapshot or
// reset after a resume) and keeps the changes delivered, to compare with
// the log at the end. It is safe for concurrent use.
type Tracker struct {
	name    string
	query   string // the stream's path and query
	headers []string
	records map[string]bool
	events  []string     // exact names, or "prefix/*"
	target  atomic.Int64 // the last position it must deliver; -1 until Expect

	mu       sync.Mutex
	id       string // the stream's id
	start    int64  // the position its first connection started at
	lastID   string // the resume token: the last id seen
	got      []LogEntry
	versions map[string]int64
	conns    int
	err      error    // the first violation
	history  []string // connections and the positions delivered, for failures
}

// NewTracker returns a tracker of a stream of records and events (exact
// names, or "prefix/*"), opened with headers (name, value, ...).
func NewTracker(name string, records, events []string, headers ...string) *Tracker {
	k := &Tracker{name: name, records: map[string]bool{}, events: events, versions: map[string]int64{}, headers: headers}
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

// Name is the tracker's name, for messages.
func (k *Tracker) Name() string { return k.name }

// Wants reports whether the stream's subscriptions select a change.
func (k *Tracker) Wants(e LogEntry) bool {
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

// Connect opens a connection to base, resuming with the last id seen once
// the stream has one, and reads its first frames: ready, and the
// snapshots of a first connection.
func (k *Tracker) Connect(base string) (*Client, error) {
	k.mu.Lock()
	last, first := k.lastID, k.conns == 0
	k.mu.Unlock()
	c, err := dial(base+k.query, last, 1<<14, k.headers...)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.conns++
	k.history = append(k.history, fmt.Sprintf("[%s connect %s from %q]", time.Now().Format("15:04:05.000"), base, last))
	k.mu.Unlock()
	n := 1
	if first {
		n += len(k.records)
	}
	for range n {
		f, ok := c.TryNext(10 * time.Second)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("%s: no ready frame or snapshots from %s", k.name, base)
		}
		if err := k.See(f); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Pump reads c's frames until the stream ends, stop is closed, or a frame
// breaks a rule.
func (k *Tracker) Pump(c *Client, stop <-chan struct{}) error {
	for {
		select {
		case f, ok := <-c.Frames():
			if !ok {
				return nil
			}
			if err := k.See(f); err != nil {
				return err
			}
		case <-stop:
			return nil
		}
	}
}

// See checks one frame and keeps the change it carries. The first
// violation stays (Err).
func (k *Tracker) See(f Frame) error {
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

// Fail keeps err as the stream's violation unless it has one.
func (k *Tracker) Fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err == nil {
		k.err = fmt.Errorf("%s: %w", k.name, err)
	}
}

// Err returns the first violation seen, or nil.
func (k *Tracker) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *Tracker) check(f Frame) error {
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
	switch {
	case f.Event == "snapshot":
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
	case f.Event == "ready" && f.ID == "": // snapshots follow, the last with the id
		if k.id != "" {
			return fmt.Errorf("ready frame without id on a resume: %s", f.Data)
		}
		k.id = d.Stream
		return nil
	case f.Event == "reset":
		return fmt.Errorf("reset: %s", f.Data)
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
	e := LogEntry{Seq: seq, Kind: f.Event, Name: d.Name}
	switch f.Event {
	case "record", "delete":
		if d.Version != k.versions[d.Name]+1 {
			return fmt.Errorf("%s %s version %d after %d: a gap or a duplicate", f.Event, d.Name, d.Version, k.versions[d.Name])
		}
		// A delete's version too: created again, a record continues after it.
		e.Version, k.versions[d.Name] = d.Version, d.Version
		if f.Event == "record" {
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
func (k *Tracker) lastSeq() int64 {
	if len(k.got) == 0 {
		return k.start
	}
	return k.got[len(k.got)-1].Seq
}

// Index is the change log by kind (event or record) and name, each list
// in log order, so that each of many streams picks its own changes
// without reading the whole log.
type Index map[indexKey][]LogEntry

type indexKey struct {
	event bool
	name  string
}

// NewIndex indexes a log. Its entries keep no data and events no version,
// as a stream's frames give them.
func NewIndex(log []LogEntry) Index {
	ix := Index{}
	for _, e := range log {
		k := indexKey{e.Kind == "event", e.Name}
		e.Data = ""
		if e.Kind == "event" {
			e.Version = 0
		}
		ix[k] = append(ix[k], e)
	}
	return ix
}

// Expect returns the changes of the log that the stream must deliver, in
// log order, and makes the last of them its target (Done).
func (k *Tracker) Expect(ix Index) []LogEntry {
	k.mu.Lock()
	start := k.start
	k.mu.Unlock()
	var want []LogEntry
	for _, es := range ix {
		if !k.Wants(es[0]) {
			continue
		}
		i, _ := slices.BinarySearchFunc(es, start+1, func(e LogEntry, seq int64) int { return cmp.Compare(e.Seq, seq) })
		want = append(want, es[i:]...)
	}
	slices.SortFunc(want, func(a, b LogEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(want) == 0 {
		k.target.Store(start)
	} else {
		k.target.Store(want[len(want)-1].Seq)
	}
	return want
}

// Done reports whether the stream has delivered everything up to its
// target (set by Expect), or has failed.
func (k *Tracker) Done() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.target.Load()
	return k.err != nil || t >= 0 && k.lastSeq() >= t
}

// Compare returns what differs between the changes delivered and want,
// with the stream's history, or the first violation seen.
func (k *Tracker) Compare(want []LogEntry) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return fmt.Errorf("%w\nhistory: %s", k.err, strings.Join(k.history, " "))
	}
	for i := range min(len(k.got), len(want)) {
		if k.got[i] != want[i] {
			return fmt.Errorf("%s: change %d delivered as %+v; the log has %+v\nhistory: %s", k.name, i, k.got[i], want[i], strings.Join(k.history, " "))
		}
	}
	if len(k.got) != len(want) {
		return fmt.Errorf("%s: delivered %d changes; the log has %d for its subscriptions after %d\nhistory: %s", k.name, len(k.got), len(want), k.start, strings.Join(k.history, " "))
	}
	return nil
}

// Delivered returns how many changes the stream delivered, and over how
// many connections.
func (k *Tracker) Delivered() (changes, conns int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.got), k.conns
}

// CatchUp waits, at most patience in all, until every tracker has
// delivered what Expect gives it of the log.
func CatchUp(trackers []*Tracker, ix Index, patience time.Duration) {
	end := time.Now().Add(patience)
	for _, k := range trackers {
		k.Expect(ix)
		for !k.Done() && time.Now().Before(end) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}
