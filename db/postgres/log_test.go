package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func set(name, data string) api.Write {
	return api.Write{Kind: api.KindSet, Name: name, Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
		return json.RawMessage(data), nil
	}}
}

// counter is a read-modify-write: it adds one to the record's number.
func counter(name string) api.Write {
	return api.Write{Kind: api.KindPatch, Name: name, Apply: func(cur json.RawMessage, exists bool) (json.RawMessage, error) {
		var n int
		if exists {
			if err := json.Unmarshal(cur, &n); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(strconv.Itoa(n + 1)), nil
	}}
}

// Invariant 2 across instances: writers on two Stores of one database
// (shared records, records both create, events, batches) race against
// pollers that read Changes after the last position they saw. Every poller
// sees positions 1, 2, 3... with no gap and no duplicate, the very log that
// a final read returns, and every record's versions in order.
func TestLogOrderAcrossInstances(t *testing.T) {
	url := pgtest.NewDatabase(t)
	stores := []*postgres.Store{open(t, url), open(t, url), open(t, url)}
	const writers, perWriter = 8, 60

	done := make(chan struct{})
	var pollers sync.WaitGroup
	seen := make([][]int64, 4)
	for p := range seen {
		pollers.Go(func() {
			s := stores[p%len(stores)]
			var last int64
			for {
				finished := isClosed(done)
				cs, err := s.Changes(t.Context(), last, 1+p*7)
				if err != nil {
					t.Errorf("poller %d: Changes(%d): %v", p, last, err)
					return
				}
				for _, c := range cs {
					seen[p] = append(seen[p], c.Seq)
					last = c.Seq
				}
				if len(cs) == 0 && finished {
					return
				}
			}
		})
	}

	var wg sync.WaitGroup
	written := make([]int, writers)
	for g := range writers {
		wg.Go(func() {
			s := stores[g%2]
			for i := range perWriter {
				var ws []api.Write
				switch i % 4 {
				case 0:
					ws = []api.Write{counter("shared")}
				case 1: // both instances create the same new names
					ws = []api.Write{set(fmt.Sprintf("new/%d", i), fmt.Sprintf(`{"g":%d}`, g))}
				case 2:
					ws = []api.Write{counter(fmt.Sprintf("own/%d", g)), {Kind: api.KindEvent, Name: "tick", Data: json.RawMessage(itoa(int64(i)))}}
				default:
					ws = []api.Write{counter("shared"), counter(fmt.Sprintf("own/%d", g))}
				}
				if _, err := s.Write(t.Context(), ws); err != nil {
					t.Errorf("writer %d, write %d: %v", g, i, err)
					return
				}
				written[g] += len(ws)
			}
		})
	}
	wg.Wait()
	close(done)
	pollers.Wait()
	if t.Failed() {
		return
	}

	total := 0
	for _, n := range written {
		total += n
	}
	var log []api.Change
	for after := int64(0); ; {
		cs, err := stores[2].Changes(t.Context(), after, 500)
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		if len(cs) == 0 {
			break
		}
		log = append(log, cs...)
		after = cs[len(cs)-1].Seq
	}
	if len(log) != total {
		t.Fatalf("the log holds %d changes, %d were written", len(log), total)
	}
	versions := map[string]int64{}
	for i, c := range log {
		if c.Seq != int64(i+1) {
			t.Fatalf("change %d of the log has Seq %d, want %d", i, c.Seq, i+1)
		}
		if i > 0 && c.Time.Before(log[i-1].Time) {
			t.Errorf("change Seq %d has time %v, before the previous change's %v", c.Seq, c.Time, log[i-1].Time)
		}
		if c.Kind == api.KindEvent {
			continue
		}
		if c.Version != versions[c.Name]+1 {
			t.Fatalf("change Seq %d of %q has version %d after version %d", c.Seq, c.Name, c.Version, versions[c.Name])
		}
		versions[c.Name] = c.Version
	}
	if r, err := stores[0].Get(t.Context(), "shared"); err != nil || string(r.Data) != itoa(r.Version) {
		t.Errorf("shared = v%d %s, %v; want its data equal to its version (no lost update)", r.Version, r.Data, err)
	}
	for p, got := range seen {
		if len(got) != total {
			t.Errorf("poller %d saw %d changes, want %d", p, len(got), total)
		}
		for i, seq := range got {
			if seq != int64(i+1) {
				t.Errorf("poller %d: change %d has Seq %d, want %d (a gap or a duplicate)", p, i, seq, i+1)
				break
			}
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

// Records of 20 KiB (several times NOTIFY's limit) are written on one
// instance and read back whole, by Get and from the log, on another.
func TestLargeRecords(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	data := fmt.Sprintf(`{"text":%q}`, strings.Repeat("0123456789abcdef", 20<<10/16))
	if len(data) < 20<<10 {
		t.Fatalf("test data is %d bytes", len(data))
	}
	cs, err := a.Write(t.Context(), []api.Write{set("big", data), set("big", data), {Kind: api.KindEvent, Name: "big", Data: json.RawMessage(data)}})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	r, err := b.Get(t.Context(), "big")
	if err != nil || r.Version != 2 || string(r.Data) != data {
		t.Fatalf("Get(big) on the other instance = v%d, %d bytes, %v; want v2, %d bytes", r.Version, len(r.Data), err, len(data))
	}
	log, err := b.Changes(t.Context(), cs[0].Seq-1, 10)
	if err != nil || len(log) != 3 {
		t.Fatalf("Changes = %d changes, %v; want 3", len(log), err)
	}
	for i, c := range log {
		if string(c.Data) != data {
			t.Errorf("change %d holds %d bytes, want %d", i, len(c.Data), len(data))
		}
	}
}

// A value that the database cannot keep (not UTF-8) fails its own batch
// with INVALID_JSON and its index; the batches committed with it succeed.
func TestInvalidValueFailsOnlyItsBatch(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			ws := []api.Write{set(fmt.Sprintf("ok/%d", i), `1`)}
			if i%5 == 0 {
				ws = append(ws, set("bad", "\"\xff\""))
			}
			_, errs[i] = s.Write(t.Context(), ws)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%5 != 0 {
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			continue
		}
		e, ok := err.(*api.Error)
		if !ok || e.Code != api.CodeInvalidJSON || e.Fields["index"] != 1 {
			t.Errorf("write %d with invalid UTF-8: %v, want INVALID_JSON at index 1", i, err)
		}
	}
}

// Instances that start together on an empty database migrate it once and
// all open.
func TestConcurrentMigrations(t *testing.T) {
	url := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			s, err := postgres.Open(ctx, url, "", nil)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	if err := postgres.Migrate(t.Context(), url); err != nil {
		t.Errorf("Migrate on a migrated database: %v", err)
	}
}

// Trim removes a long log in several transactions and keeps what is newer
// than the cut.
func TestTrimManyBatches(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	var old []api.Change
	for i := range 25 {
		ws := make([]api.Write, 100)
		for j := range ws {
			ws[j] = set(fmt.Sprintf("r/%d", j), itoa(int64(i)))
		}
		cs, err := s.Write(t.Context(), ws)
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		old = append(old, cs...)
	}
	time.Sleep(20 * time.Millisecond)
	kept, err := s.Write(t.Context(), []api.Write{set("r/0", `"new"`), set("r/1", `"new"`)})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	last := old[len(old)-1]
	if err := s.Trim(t.Context(), api.TrimOptions{Before: last.Time.Add(kept[0].Time.Sub(last.Time) / 2)}); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	if _, err := s.Changes(t.Context(), last.Seq-1, 10); err != api.ErrTrimmed {
		t.Errorf("Changes before the cut: %v, want ErrTrimmed", err)
	}
	cs, err := s.Changes(t.Context(), last.Seq, 10)
	if err != nil || len(cs) != 2 || cs[0].Seq != kept[0].Seq || cs[1].Seq != kept[1].Seq {
		t.Errorf("Changes after the cut = %s, %v; want the 2 kept changes", brief(cs), err)
	}
	if r, err := s.Get(t.Context(), "r/99"); err != nil || r.Version != 25 {
		t.Errorf("Get(r/99) after Trim = v%d, %v; want v25", r.Version, err)
	}
}
