package chaos

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/realtime"
)

// follower follows one stream across connections and instances: it
// checks every frame as it arrives (one stream id on every connection,
// ids increasing, each record's versions one after the other, no snapshot
// or reset after a resume) and keeps the changes delivered, to compare
// with the log at the end. It is safe for concurrent use.
type follower struct {
	name    string
	query   string // the stream's path and query
	records map[string]bool
	prefix  string // events under it ("ev/")
	headers []string

	mu       sync.Mutex
	id       string // the stream's id
	start    int64  // the position of its first connection's start
	lastID   string // the resume token: the last id seen
	got      []logEntry
	versions map[string]int64
	conns    int
	err      error // the first violation
}

func newFollower(name string, records []string, eventPrefix string, headers ...string) *follower {
	f := &follower{name: name, records: map[string]bool{}, prefix: eventPrefix, versions: map[string]int64{}, headers: headers}
	var q []string
	for _, r := range records {
		f.records[r] = true
		q = append(q, "record="+r)
	}
	if eventPrefix != "" {
		q = append(q, "event="+eventPrefix+"*")
	}
	f.query = "/stream?" + strings.Join(q, "&")
	return f
}

// wants reports whether the stream's subscriptions select a change.
func (f *follower) wants(e logEntry) bool {
	if e.Kind == "event" {
		return f.prefix != "" && strings.HasPrefix(e.Name, f.prefix)
	}
	return f.records[e.Name]
}

// connect opens a connection to base (resuming when the stream has an id)
// and reads its first frames: ready, and the snapshots of a first
// connection.
func (f *follower) connect(base string) (*stream, error) {
	f.mu.Lock()
	last, first := f.lastID, f.conns == 0
	f.mu.Unlock()
	s, err := dial(base+f.query, last, f.headers...)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.conns++
	f.mu.Unlock()
	n := 1
	if first {
		n += len(f.records)
	}
	for range n {
		fr, ok := s.next(10 * time.Second)
		if !ok {
			s.close()
			return nil, fmt.Errorf("%s: no ready frame or snapshots from %s", f.name, base)
		}
		if err := f.see(fr); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// pump reads frames until the stream ends, stop is closed, or a frame
// breaks a rule.
func (f *follower) pump(s *stream, stop <-chan struct{}) error {
	for {
		select {
		case fr, ok := <-s.frames:
			if !ok {
				return nil
			}
			if err := f.see(fr); err != nil {
				return err
			}
		case <-stop:
			return nil
		}
	}
}

// see checks one frame and keeps the change it carries; the first
// violation stays in f.err.
func (f *follower) see(fr frame) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.check(fr)
	if err != nil {
		err = fmt.Errorf("%s (connection %d): %w", f.name, f.conns, err)
		if f.err == nil {
			f.err = err
		}
	}
	return err
}

func (f *follower) check(fr frame) error {
	var d struct {
		Stream  string
		Name    string
		Version int64
		Op      string
		ID      string
	}
	if err := json.Unmarshal([]byte(fr.Data), &d); err != nil {
		return fmt.Errorf("%s frame %q: %v", fr.Event, fr.Data, err)
	}
	switch {
	case fr.Event == "snapshot":
		if f.conns > 1 {
			return fmt.Errorf("snapshot on a resumed connection: %s", fr.Data)
		}
		f.versions[d.Name] = d.Version
		if fr.ID != "" { // the last snapshot carries the start position
			_, seq, ok := realtime.ParseToken(fr.ID)
			if !ok {
				return fmt.Errorf("snapshot %s with id %q", fr.Data, fr.ID)
			}
			f.start, f.lastID = seq, fr.ID
		}
		return nil
	case fr.Event == "ready" && fr.ID == "":
		if f.id != "" {
			return fmt.Errorf("ready frame without id on a resume: %s", fr.Data)
		}
		f.id = d.Stream
		return nil
	case fr.Event == "reset":
		return fmt.Errorf("reset: %s", fr.Data)
	}
	id, seq, ok := realtime.ParseToken(fr.ID)
	if !ok {
		return fmt.Errorf("%s frame %s with id %q", fr.Event, fr.Data, fr.ID)
	}
	if fr.Event == "ready" {
		switch {
		case f.id == "":
			f.id, f.start = d.Stream, seq
		case d.Stream != f.id || id != f.id:
			return fmt.Errorf("resumed as stream %s (id %s), want %s", d.Stream, fr.ID, f.id)
		case fr.ID != f.lastID:
			return fmt.Errorf("ready at %s, resumed from %s", fr.ID, f.lastID)
		}
		f.lastID = fr.ID
		return nil
	}
	if id != f.id {
		return fmt.Errorf("%s frame of stream %s, want %s", fr.Event, fr.ID, f.id)
	}
	if last := f.lastSeq(); seq <= last {
		return fmt.Errorf("%s frame %s at %d after %d: a duplicate or out of order", fr.Event, fr.Data, seq, last)
	}
	e := logEntry{Seq: seq, Kind: fr.Event, Name: d.Name}
	switch fr.Event {
	case "record", "delete":
		if d.Version != f.versions[d.Name]+1 {
			return fmt.Errorf("%s %s version %d after %d: a gap or a duplicate", fr.Event, d.Name, d.Version, f.versions[d.Name])
		}
		e.Version, f.versions[d.Name] = d.Version, d.Version
		if fr.Event == "record" {
			e.Kind = d.Op
		}
	case "event":
		if d.ID != strconv.FormatInt(seq, 10) {
			return fmt.Errorf("event %s has id %s in frame %s", d.Name, d.ID, fr.ID)
		}
	default:
		return fmt.Errorf("unexpected %s frame %s", fr.Event, fr.Data)
	}
	f.got = append(f.got, e)
	f.lastID = fr.ID
	return nil
}

// lastSeq is the position of the last change delivered; f.mu is held.
func (f *follower) lastSeq() int64 {
	if len(f.got) == 0 {
		return f.start
	}
	return f.got[len(f.got)-1].Seq
}

// logIndex is the change log by kind (event or record) and name, each
// list in log order, so that each of many streams picks its own changes
// without reading the whole log.
type logIndex map[logKey][]logEntry

type logKey struct {
	event bool
	name  string
}

func index(log []logEntry) logIndex {
	ix := logIndex{}
	for _, e := range log {
		k := logKey{e.Kind == "event", e.Name}
		ix[k] = append(ix[k], logEntry{Seq: e.Seq, Kind: e.Kind, Name: e.Name, Version: e.Version})
	}
	return ix
}

// want returns the changes of the log that the stream must deliver, in
// log order.
func (f *follower) want(ix logIndex) []logEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var want []logEntry
	for _, es := range ix {
		if !f.wants(es[0]) {
			continue
		}
		i, _ := slices.BinarySearchFunc(es, f.start+1, func(e logEntry, seq int64) int { return cmp.Compare(e.Seq, seq) })
		want = append(want, es[i:]...)
	}
	slices.SortFunc(want, func(a, b logEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	for i := range want {
		if want[i].Kind == "event" {
			want[i].Version = 0
		}
	}
	return want
}

// caughtUp reports whether the stream has delivered up to seq.
func (f *follower) caughtUp(seq int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err != nil || f.lastSeq() >= seq
}

// compare returns what differs between the changes delivered and want.
func (f *follower) compare(want []logEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	for i := range min(len(f.got), len(want)) {
		if f.got[i] != want[i] {
			return fmt.Errorf("%s: change %d delivered as %+v; the log has %+v", f.name, i, f.got[i], want[i])
		}
	}
	if len(f.got) != len(want) {
		return fmt.Errorf("%s: delivered %d changes; the log has %d for its subscriptions after %d", f.name, len(f.got), len(want), f.start)
	}
	return nil
}

// catchUp waits (at most patience) until every follower has delivered the
// last change of the log it subscribes to.
func catchUp(followers []*follower, ix logIndex) {
	end := time.Now().Add(patience)
	for _, f := range followers {
		want := f.want(ix)
		if len(want) == 0 {
			continue
		}
		for !f.caughtUp(want[len(want)-1].Seq) && time.Now().Before(end) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}
