package dbtest

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

func retentionTests() []test {
	return []test{
		{"Trim", testTrim},
		{"TrimAll", testTrimAll},
	}
}

// wantTrimmed checks that Changes(after) says ErrTrimmed.
func wantTrimmed(t *testing.T, s api.Store, after int64) {
	t.Helper()
	cs, err := s.Changes(t.Context(), after, 10)
	if !errors.Is(err, api.ErrTrimmed) {
		t.Errorf("Changes(%d, 10) = %s, %v; want api.ErrTrimmed", after, brief(cs), err)
	}
}

// Trim removes the changes older than its cut: reading from a position
// whose following changes are gone says ErrTrimmed, reading from the last
// trimmed change returns what was kept, and records stay.
//
// The cut is taken between the times the store gave the changes, so that
// the store's clock (a database server's, say) need not agree with ours.
func testTrim(t *testing.T, s api.Store) {
	mustWrite(t, s, set("a", docV1), set("b", docV1))
	mustWrite(t, s, event("old", `1`, "u"))
	time.Sleep(50 * time.Millisecond)
	mustWrite(t, s, set("a", docV2), event("new", `2`, "u"))
	mustWrite(t, s, set("c", docV1))

	log := changesAfter(t, s, 0)
	if len(log) != 6 {
		t.Fatalf("the log holds %d changes, want 6", len(log))
	}
	old, kept := log[:3], log[3:]
	gap := kept[0].Time.Sub(old[2].Time)
	if gap < 10*time.Millisecond {
		t.Fatalf("changes written 50ms apart have times %v and %v", old[2].Time, kept[0].Time)
	}

	// A cut before every change trims nothing.
	if err := s.Trim(t.Context(), log[0].Time.Add(-time.Hour)); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	wantSameChanges(t, changesAfter(t, s, 0), log)

	if err := s.Trim(t.Context(), old[2].Time.Add(gap/2)); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	wantTrimmed(t, s, 0)
	wantTrimmed(t, s, old[0].Seq)
	wantTrimmed(t, s, old[1].Seq)
	wantSameChanges(t, changesAfter(t, s, old[2].Seq), kept)
	wantSameChanges(t, changesAfter(t, s, kept[0].Seq), kept[1:])
	wantNoChanges(t, s, kept[len(kept)-1].Seq)

	wantRecord(t, s, "a", 2, docV2)
	wantRecord(t, s, "b", 1, docV1)
	wantRecord(t, s, "c", 1, docV1)
	pos, recs, err := s.Snapshot(t.Context(), []string{"b"})
	if err != nil || pos != kept[len(kept)-1].Seq || len(recs) != 1 || recs[0].Version != 1 {
		t.Errorf("Snapshot(b) after Trim = %d, %+v, %v; want %d and b at version 1", pos, recs, err, kept[len(kept)-1].Seq)
	}
}

// Trimming the whole log still remembers where it ended: older positions
// say ErrTrimmed, the head reads nothing, and new changes come after it.
func testTrimAll(t *testing.T, s api.Store) {
	mustWrite(t, s, set("a", docV1))
	last := mustWrite(t, s, set("a", docV2), event("e", `1`, "u"))[1]
	if err := s.Trim(t.Context(), last.Time.Add(time.Hour)); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	wantTrimmed(t, s, 0)
	wantTrimmed(t, s, last.Seq-1)
	wantNoChanges(t, s, last.Seq)
	wantRecord(t, s, "a", 2, docV2)

	pos, _, err := s.Snapshot(t.Context(), []string{"a"})
	if err != nil || pos != last.Seq {
		t.Errorf("Snapshot after trimming everything = %d, %v; want position %d", pos, err, last.Seq)
	}
	c := mustWrite(t, s, set("a", docV3))[0]
	if c.Seq <= last.Seq {
		t.Fatalf("a change after Trim has Seq %d, not after the trimmed head %d", c.Seq, last.Seq)
	}
	wantChange(t, c, api.KindSet, "a", 3, docV3)
	wantSameChanges(t, changesAfter(t, s, last.Seq), []api.Change{c})
}
