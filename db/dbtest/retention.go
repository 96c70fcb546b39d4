package dbtest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

func retentionTests() []test {
	return []test{
		{"Trim", testTrim},
		{"TrimAll", testTrimAll},
		{"TrimBytes", testTrimBytes},
		{"TrimBytesAndTime", testTrimBytesAndTime},
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
	if err := s.Trim(t.Context(), api.TrimOptions{Before: log[0].Time.Add(-time.Hour)}); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	wantSameChanges(t, changesAfter(t, s, 0), log)

	if err := s.Trim(t.Context(), api.TrimOptions{Before: old[2].Time.Add(gap / 2)}); err != nil {
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
	if err := s.Trim(t.Context(), api.TrimOptions{Before: last.Time.Add(time.Hour)}); err != nil {
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

// trim calls Trim and stops the test if it fails.
func trim(t *testing.T, s api.Store, o api.TrimOptions) {
	t.Helper()
	if err := s.Trim(t.Context(), o); err != nil {
		t.Fatalf("Trim(%+v): %v", o, err)
	}
}

// sizeFrom returns the Size of log[i:] added up.
func sizeFrom(log []api.Change, i int) int64 {
	var n int64
	for _, c := range log[i:] {
		n += c.Size()
	}
	return n
}

// wantKept checks that the store's log is log[i:]: reading from before
// log[i-1] says ErrTrimmed, reading from it returns the rest.
func wantKept(t *testing.T, s api.Store, log []api.Change, i int) {
	t.Helper()
	if i == 0 {
		wantSameChanges(t, changesAfter(t, s, 0), log)
		return
	}
	wantTrimmed(t, s, 0)
	if i >= 2 {
		wantTrimmed(t, s, log[i-2].Seq)
	}
	wantSameChanges(t, changesAfter(t, s, log[i-1].Seq), log[i:])
}

// Trim with MaxBytes keeps the newest changes whose Size adds up to
// MaxBytes or less and removes the others, also when none are old:
// reading from a removed position says ErrTrimmed, records stay. MaxBytes
// 0 is no bound; a bound below the last change empties the log, and the
// head is still remembered.
func testTrimBytes(t *testing.T, s api.Store) {
	mustWrite(t, s, set("a", docV1), event("e", `"`+strings.Repeat("x", 300)+`"`, "someone"))
	mustWrite(t, s, set("b", docV2), del("a"))
	mustWrite(t, s, event("e", `2`, ""), set("c", docV3))
	log := changesAfter(t, s, 0)
	if len(log) != 6 {
		t.Fatalf("the log holds %d changes, want 6", len(log))
	}
	past := log[0].Time.Add(-time.Hour) // old enough to remove nothing by age

	for _, max := range []int64{0, sizeFrom(log, 0)} {
		trim(t, s, api.TrimOptions{Before: past, MaxBytes: max})
		wantKept(t, s, log, 0)
	}
	trim(t, s, api.TrimOptions{Before: past, MaxBytes: sizeFrom(log, 0) - 1})
	wantKept(t, s, log, 1)
	trim(t, s, api.TrimOptions{Before: past, MaxBytes: sizeFrom(log, 3)})
	wantKept(t, s, log, 3)
	trim(t, s, api.TrimOptions{Before: past, MaxBytes: sizeFrom(log, 3)})
	wantKept(t, s, log, 3)

	// The bound holds as the log grows: each Trim counts what is there.
	log = append(log, mustWrite(t, s, set("d", docV1), event("e", `3`, "u"))...)
	trim(t, s, api.TrimOptions{Before: past, MaxBytes: sizeFrom(log, 5) + log[4].Size() - 1})
	wantKept(t, s, log, 5)

	wantMissing(t, s, "a")
	wantRecord(t, s, "b", 1, docV2)
	wantRecord(t, s, "c", 1, docV3)
	wantRecord(t, s, "d", 1, docV1)

	last := log[len(log)-1]
	trim(t, s, api.TrimOptions{Before: past, MaxBytes: last.Size() - 1})
	wantTrimmed(t, s, log[len(log)-2].Seq)
	wantNoChanges(t, s, last.Seq)
	if pos, _, err := s.Snapshot(t.Context(), nil); err != nil || pos != last.Seq {
		t.Errorf("Snapshot after trimming everything by size = %d, %v; want position %d", pos, err, last.Seq)
	}
	c := mustWrite(t, s, set("d", docV2))[0]
	if c.Seq <= last.Seq {
		t.Fatalf("a change after Trim has Seq %d, not after the trimmed head %d", c.Seq, last.Seq)
	}
	wantSameChanges(t, changesAfter(t, s, last.Seq), []api.Change{c})
}

// With both bounds, a change goes when either says so; streams are
// trimmed by age only.
func testTrimBytesAndTime(t *testing.T, s api.Store) {
	mustWrite(t, s, set("a", docV1), event("old", `1`, "u"))
	time.Sleep(50 * time.Millisecond)
	mustWrite(t, s, set("a", docV2), event("new", `2`, "u"), set("b", docV1), event("new", `3`, ""))
	log := changesAfter(t, s, 0)
	if len(log) != 6 {
		t.Fatalf("the log holds %d changes, want 6", len(log))
	}
	gap := log[2].Time.Sub(log[1].Time)
	if gap < 10*time.Millisecond {
		t.Fatalf("changes written 50ms apart have times %v and %v", log[1].Time, log[2].Time)
	}
	cut := log[1].Time.Add(gap / 2) // the first two are older
	stream := api.StreamInfo{ID: "s", User: "u", Subs: []api.StreamSub{{Subscription: api.Subscription{Record: "a"}}}, Updated: log[2].Time.Add(time.Hour)}
	if err := s.PutStream(t.Context(), stream); err != nil {
		t.Fatalf("PutStream: %v", err)
	}

	trim(t, s, api.TrimOptions{Before: cut, MaxBytes: sizeFrom(log, 1)}) // age removes more
	wantKept(t, s, log, 2)
	trim(t, s, api.TrimOptions{Before: cut, MaxBytes: sizeFrom(log, 4)}) // size removes more
	wantKept(t, s, log, 4)
	trim(t, s, api.TrimOptions{Before: cut, MaxBytes: 1})
	wantKept(t, s, log, 6)
	wantStream(t, s, stream)
	wantRecord(t, s, "a", 2, docV2)
	wantRecord(t, s, "b", 1, docV1)
}
