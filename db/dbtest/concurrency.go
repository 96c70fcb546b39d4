package dbtest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// The shape of the concurrent tests: writers goroutines of perWriter
// writes each.
const (
	writers   = 16
	perWriter = 50
)

func concurrencyTests() []test {
	return []test{
		{"Sets", testConcurrentSets},
		{"ReadModifyWrite", testConcurrentReadModifyWrite},
		{"ReadersSeeNoGap", testReadersSeeNoGap},
	}
}

// runWriters runs writers goroutines that each call write(g, i) for i in
// [0, perWriter), and returns the changes each Write returned. A failing
// write fails the test and stops its goroutine.
func runWriters(t *testing.T, s api.Store, write func(g, i int) []api.Write) []api.Change {
	t.Helper()
	got := make([][]api.Change, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				cs, err := s.Write(t.Context(), write(g, i))
				if err != nil {
					t.Errorf("writer %d, write %d: %v", g, i, err)
					return
				}
				got[g] = append(got[g], cs...)
			}
		})
	}
	wg.Wait()
	var all []api.Change
	for _, cs := range got {
		all = append(all, cs...)
	}
	return all
}

// wantConsistentLog checks a log written by concurrent writers on an empty
// store: n changes, Seq strictly increasing, each record's versions 1, 2,
// 3... in log order (events aside), and exactly the changes that the
// writes returned.
func wantConsistentLog(t *testing.T, log, returned []api.Change, n int) {
	t.Helper()
	if len(log) != n {
		t.Fatalf("the log holds %d changes, want %d", len(log), n)
	}
	wantIncreasing(t, log)
	versions := map[string]int64{}
	for _, c := range log {
		if c.Kind == api.KindEvent {
			continue
		}
		if c.Version != versions[c.Name]+1 {
			t.Fatalf("change Seq %d of %q has version %d after version %d: versions must follow each other in log order",
				c.Seq, c.Name, c.Version, versions[c.Name])
		}
		versions[c.Name] = c.Version
	}
	bySeq := make(map[int64]api.Change, len(returned))
	for _, c := range returned {
		if _, dup := bySeq[c.Seq]; dup {
			t.Fatalf("two writes returned changes with Seq %d", c.Seq)
		}
		bySeq[c.Seq] = c
	}
	for _, c := range log {
		r, ok := bySeq[c.Seq]
		if !ok {
			t.Fatalf("change Seq %d of the log was returned by no Write", c.Seq)
		}
		wantSameChanges(t, []api.Change{c}, []api.Change{r})
	}
}

// Writers set records of their own and one shared record, interleaved: no
// write is lost, and the log orders every record's versions.
func testConcurrentSets(t *testing.T, s api.Store) {
	returned := runWriters(t, s, func(g, i int) []api.Write {
		name := fmt.Sprintf("own/%d", g)
		if i%2 == 1 {
			name = "shared"
		}
		return []api.Write{set(name, fmt.Sprintf(`{"g":%d,"i":%d}`, g, i))}
	})
	if t.Failed() {
		return
	}
	for g := range writers {
		wantRecord(t, s, fmt.Sprintf("own/%d", g), perWriter/2, fmt.Sprintf(`{"g":%d,"i":%d}`, g, perWriter-2))
	}
	r, err := s.Get(t.Context(), "shared")
	if err != nil || r.Version != writers*perWriter/2 {
		t.Errorf("Get(shared) = v%d, %v; want version %d", r.Version, err, writers*perWriter/2)
	}
	log := changesAfter(t, s, 0)
	wantConsistentLog(t, log, returned, writers*perWriter)
	if last := lastOf(log, "shared"); string(last.Data) != string(r.Data) {
		t.Errorf("shared holds %s, but its last change in the log is %s", r.Data, last.Data)
	}
}

// lastOf returns the last change of name in log.
func lastOf(log []api.Change, name string) api.Change {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].Name == name {
			return log[i]
		}
	}
	return api.Change{}
}

// addKey is a path-style write: Apply decodes the current object, adds
// key and returns the whole object.
func addKey(name, key string) api.Write {
	return api.Write{Kind: api.KindPatch, Name: name, Apply: func(cur json.RawMessage, exists bool) (json.RawMessage, error) {
		m := map[string]bool{}
		if exists {
			if err := json.Unmarshal(cur, &m); err != nil {
				return nil, api.Errorf(api.CodePatchFailed, "decode %q: %v", name, err)
			}
		}
		m[key] = true
		return json.Marshal(m)
	}}
}

// Read-modify-write on one record from many goroutines loses no update:
// each Apply sees the value as it is when the write happens.
func testConcurrentReadModifyWrite(t *testing.T, s api.Store) {
	returned := runWriters(t, s, func(g, i int) []api.Write {
		return []api.Write{addKey("doc", fmt.Sprintf("%d-%d", g, i))}
	})
	if t.Failed() {
		return
	}
	const n = writers * perWriter
	r, err := s.Get(t.Context(), "doc")
	if err != nil {
		t.Fatalf("Get(doc): %v", err)
	}
	var m map[string]bool
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatalf("doc holds %s: %v", r.Data, err)
	}
	if r.Version != n || len(m) != n {
		t.Errorf("doc is at version %d with %d keys, want version %d with %d keys", r.Version, len(m), n, n)
	}
	for g := range writers {
		for i := range perWriter {
			if key := fmt.Sprintf("%d-%d", g, i); !m[key] {
				t.Errorf("doc lost the key %q", key)
			}
		}
	}

	log := changesAfter(t, s, 0)
	wantConsistentLog(t, log, returned, n)
	for _, c := range log {
		var m map[string]bool
		if err := json.Unmarshal(c.Data, &m); err != nil || int64(len(m)) != c.Version {
			t.Fatalf("change of version %d holds %d keys (%v), want %d: each change carries the whole value after it",
				c.Version, len(m), err, c.Version)
		}
	}
}

// Readers that poll Changes after the last change they saw, while writers
// run, see the very log that a final full read returns: nothing missing,
// nothing twice, nothing out of order. A store whose Seq is taken before
// commit (so that Seq 11 may become visible before Seq 10) fails here.
func testReadersSeeNoGap(t *testing.T, s api.Store) {
	done := make(chan struct{})
	limits := []int{1, 4, 16, 64}
	seen := make([][]api.Change, len(limits))
	var readers sync.WaitGroup
	for r, limit := range limits {
		readers.Go(func() { seen[r] = poll(t, s, limit, done) })
	}

	write := func(g, i int) []api.Write {
		own := fmt.Sprintf("own/%d", g)
		switch i % 3 {
		case 0:
			return []api.Write{set(own, fmt.Sprintf(`{"i":%d}`, i))}
		case 1:
			return []api.Write{set("shared", fmt.Sprintf(`{"g":%d}`, g)), event("tick", fmt.Sprintf(`%d`, i), own)}
		default:
			return []api.Write{addKey(own+"/keys", fmt.Sprint(i))}
		}
	}
	returned := runWriters(t, s, write)
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}

	n := 0
	for i := range perWriter {
		n += writers * len(write(0, i))
	}
	full := changesAfter(t, s, 0)
	wantConsistentLog(t, full, returned, n)
	for r, got := range seen {
		if len(got) != len(full) {
			t.Errorf("reader %d (limit %d) saw %d changes, the log holds %d", r, limits[r], len(got), len(full))
		}
		for i := range min(len(got), len(full)) {
			if got[i].Seq != full[i].Seq {
				t.Errorf("reader %d (limit %d): change %d has Seq %d, the log has Seq %d there (a gap or a duplicate)",
					r, limits[r], i, got[i].Seq, full[i].Seq)
				break
			}
		}
	}
}

// poll reads Changes after the last change seen, limit at a time, until
// done is closed and a read that began after that found nothing new.
func poll(t *testing.T, s api.Store, limit int, done <-chan struct{}) []api.Change {
	var seen []api.Change
	var last int64
	for {
		finished := isClosed(done)
		cs, err := s.Changes(t.Context(), last, limit)
		if err != nil {
			t.Errorf("Changes(%d, %d): %v", last, limit, err)
			return seen
		}
		if len(cs) > limit {
			t.Errorf("Changes(%d, %d) returned %d changes", last, limit, len(cs))
			return seen
		}
		for _, c := range cs {
			if c.Seq <= last {
				t.Errorf("Changes(%d, %d) returned Seq %d", last, limit, c.Seq)
				return seen
			}
			last = c.Seq
		}
		seen = append(seen, cs...)
		if len(cs) == 0 && finished {
			return seen
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
