package dbtest

import (
	"context"
	"errors"
	"reflect"
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

func streamTests() []test {
	return []test{
		{"RoundTrip", testStreamRoundTrip},
		{"Trim", testStreamTrim},
	}
}

func miscTests() []test {
	return []test{
		{"Ping", testPing},
		{"CancelledWrite", testCancelledWrite},
		{"WriteAfterClose", testWriteAfterClose},
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

// wantStream checks that GetStream returns want.
func wantStream(t *testing.T, s api.Store, want api.StreamInfo) {
	t.Helper()
	got, err := s.GetStream(t.Context(), want.ID)
	if err != nil {
		t.Errorf("GetStream(%q): %v", want.ID, err)
		return
	}
	if got.ID != want.ID || got.User != want.User || !reflect.DeepEqual(got.Subs, want.Subs) || !got.Updated.Equal(want.Updated) {
		t.Errorf("GetStream(%q) = %+v, want %+v", want.ID, got, want)
	}
}

// A stream's state comes back as it was put; a second put replaces it.
func testStreamRoundTrip(t *testing.T, s api.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := api.StreamInfo{
		ID:   "stream-1",
		User: "alice",
		Subs: []api.StreamSub{
			{Subscription: api.Subscription{Record: "doc", Path: "items[2].name"}, Since: 42},
			{Subscription: api.Subscription{Record: "other"}},
			{Subscription: api.Subscription{Event: "chat/*"}},
			{Subscription: api.Subscription{Presence: "*"}},
			{Subscription: api.Subscription{Listen: "drivers/*"}},
		},
		Updated: now,
	}
	if err := s.PutStream(t.Context(), st); err != nil {
		t.Fatalf("PutStream: %v", err)
	}
	wantStream(t, s, st)

	_, err := s.GetStream(t.Context(), "stream-2")
	wantError(t, err, api.CodeNotFound)

	other := api.StreamInfo{ID: "stream-2", User: "", Subs: []api.StreamSub{{Subscription: api.Subscription{Event: "x"}}}, Updated: now}
	if err := s.PutStream(t.Context(), other); err != nil {
		t.Fatalf("PutStream: %v", err)
	}
	replaced := api.StreamInfo{
		ID:      "stream-1",
		User:    "alice",
		Subs:    []api.StreamSub{{Subscription: api.Subscription{Record: "new"}, Since: 7}},
		Updated: now.Add(time.Second),
	}
	if err := s.PutStream(t.Context(), replaced); err != nil {
		t.Fatalf("PutStream: %v", err)
	}
	wantStream(t, s, replaced)
	wantStream(t, s, other)
}

// Trim removes the streams last updated before its cut, and only them.
func testStreamTrim(t *testing.T, s api.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	sub := []api.StreamSub{{Subscription: api.Subscription{Record: "doc"}}}
	old := api.StreamInfo{ID: "old", User: "u", Subs: sub, Updated: now.Add(-2 * time.Hour)}
	fresh := api.StreamInfo{ID: "fresh", User: "u", Subs: sub, Updated: now}
	for _, st := range []api.StreamInfo{old, fresh} {
		if err := s.PutStream(t.Context(), st); err != nil {
			t.Fatalf("PutStream(%q): %v", st.ID, err)
		}
	}
	if err := s.Trim(t.Context(), now.Add(-time.Hour)); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	_, err := s.GetStream(t.Context(), "old")
	wantError(t, err, api.CodeNotFound)
	wantStream(t, s, fresh)
}

func testPing(t *testing.T, s api.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// A Write whose context is already cancelled fails and changes nothing.
func testCancelledWrite(t *testing.T, s api.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cs, err := s.Write(ctx, []api.Write{set("doc", docV1)})
	if err == nil {
		t.Errorf("Write with a cancelled context = %s, nil; want an error", brief(cs))
	}
	wantMissing(t, s, "doc")
	wantNoChanges(t, s, 0)
}

// After Close, a Write fails instead of waiting forever, and Close may be
// called again (the cleanup registered by open calls it once more).
func testWriteAfterClose(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range 20 {
		done := make(chan error, 1)
		go func() {
			_, err := s.Write(context.Background(), []api.Write{set("doc", docV2)})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("Write %d after Close succeeded, want an error", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Write %d after Close has not returned after 5s", i)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
