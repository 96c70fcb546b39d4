package dbtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// The subscriptions of a stored stream, changed one at a time
// (AddStreamSub, RemoveStreamSub, SetStreamSince, TouchStream).

func streamSubTests() []test {
	return []test{
		{"AddRemoveTouch", testStreamSubsRoundTrip},
		{"Order", testStreamSubsOrder},
		{"AddExisting", testStreamSubsAddExisting},
		{"SetSince", testStreamSubsSetSince},
		{"UnknownStream", testStreamSubsUnknown},
		{"PutReplaces", testStreamSubsPutReplaces},
		{"Trim", testStreamSubsTrim},
		{"ConcurrentAdds", testStreamSubsConcurrentAdds},
		{"ConcurrentRemoves", testStreamSubsConcurrentRemoves},
	}
}

func rec(name string, since int64) api.StreamSub {
	return api.StreamSub{Subscription: api.Subscription{Record: name}, Since: since}
}

// putStream stores a stream of user "u" with subs, updated at updated.
func putStream(t *testing.T, s api.Store, id string, updated time.Time, subs ...api.StreamSub) api.StreamInfo {
	t.Helper()
	st := api.StreamInfo{ID: id, User: "u", Subs: subs, Start: 3, Updated: updated}
	if err := s.PutStream(t.Context(), st); err != nil {
		t.Fatalf("PutStream(%q): %v", id, err)
	}
	return st
}

// wantSubs checks that the stream's user, start and updated time are
// those of want and that its subscriptions are subs, in order.
func wantSubs(t *testing.T, s api.Store, want api.StreamInfo, subs ...api.StreamSub) {
	t.Helper()
	got, err := s.GetStream(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetStream(%q): %v", want.ID, err)
	}
	if got.ID != want.ID || got.User != want.User || got.Start != want.Start || !got.Updated.Equal(want.Updated) {
		t.Errorf("GetStream(%q) = {%q %q start %d updated %v}, want {%q %q start %d updated %v}", want.ID,
			got.ID, got.User, got.Start, got.Updated, want.ID, want.User, want.Start, want.Updated)
	}
	if !slices.Equal(got.Subs, subs) {
		t.Errorf("GetStream(%q).Subs =\n  %+v\nwant\n  %+v", want.ID, got.Subs, subs)
	}
}

// A subscription added comes after those put, one removed goes, and each
// change, a touch too, sets the stream's updated time.
func testStreamSubsRoundTrip(t *testing.T, s api.Store) {
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	ev := api.StreamSub{Subscription: api.Subscription{Event: "chat/*"}}
	path := api.StreamSub{Subscription: api.Subscription{Record: "doc", Path: "items[2].name"}, Since: 9}
	st := putStream(t, s, "s", now, rec("a", 0), ev)

	st.Updated = now.Add(time.Second)
	if err := s.AddStreamSub(ctx, "s", path, st.Updated); err != nil {
		t.Fatalf("AddStreamSub: %v", err)
	}
	wantSubs(t, s, st, rec("a", 0), ev, path)

	st.Updated = now.Add(2 * time.Second)
	if err := s.RemoveStreamSub(ctx, "s", ev.Subscription, st.Updated); err != nil {
		t.Fatalf("RemoveStreamSub: %v", err)
	}
	wantSubs(t, s, st, rec("a", 0), path)

	st.Updated = now.Add(3 * time.Second)
	if err := s.RemoveStreamSub(ctx, "s", ev.Subscription, st.Updated); err != nil {
		t.Fatalf("RemoveStreamSub of a subscription the stream does not have: %v", err)
	}
	wantSubs(t, s, st, rec("a", 0), path)

	st.Updated = now.Add(4 * time.Second)
	if err := s.TouchStream(ctx, "s", st.Updated); err != nil {
		t.Fatalf("TouchStream: %v", err)
	}
	wantSubs(t, s, st, rec("a", 0), path)
}

// Subscriptions keep the order they were added in, across removals; one
// removed and added again goes last.
func testStreamSubsOrder(t *testing.T, s api.Store) {
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := putStream(t, s, "s", now)
	var want []api.StreamSub
	for i := range 30 {
		// Names whose order is neither that of the additions nor its reverse.
		x := rec(fmt.Sprintf("r%02d", (i*7)%30), int64(i))
		if err := s.AddStreamSub(ctx, "s", x, now); err != nil {
			t.Fatalf("AddStreamSub(%d): %v", i, err)
		}
		want = append(want, x)
	}
	wantSubs(t, s, st, want...)
	for _, i := range []int{29, 0, 14} {
		if err := s.RemoveStreamSub(ctx, "s", want[i].Subscription, now); err != nil {
			t.Fatalf("RemoveStreamSub: %v", err)
		}
	}
	back := want[14]
	want = slices.Delete(want, 29, 30)
	want = slices.Delete(want, 14, 15)
	want = slices.Delete(want, 0, 1)
	wantSubs(t, s, st, want...)
	if err := s.AddStreamSub(ctx, "s", back, now); err != nil {
		t.Fatalf("AddStreamSub: %v", err)
	}
	wantSubs(t, s, st, append(want, back)...)
}

// Adding a subscription that the stream has changes nothing but the
// updated time: not its place, not its Since.
func testStreamSubsAddExisting(t *testing.T, s api.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := putStream(t, s, "s", now, rec("a", 4), rec("b", 5))
	st.Updated = now.Add(time.Second)
	if err := s.AddStreamSub(t.Context(), "s", rec("a", 40), st.Updated); err != nil {
		t.Fatalf("AddStreamSub: %v", err)
	}
	wantSubs(t, s, st, rec("a", 4), rec("b", 5))
}

// SetStreamSince changes the Since of a subscription the stream has, and
// nothing else; it does not bring back one that was removed.
func testStreamSubsSetSince(t *testing.T, s api.Store) {
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := putStream(t, s, "s", now, rec("a", 4), rec("b", 5))
	if err := s.SetStreamSince(ctx, "s", rec("a", 44)); err != nil {
		t.Fatalf("SetStreamSince: %v", err)
	}
	wantSubs(t, s, st, rec("a", 44), rec("b", 5))
	if err := s.SetStreamSince(ctx, "s", rec("gone", 7)); err != nil {
		t.Fatalf("SetStreamSince of a subscription the stream does not have: %v", err)
	}
	wantSubs(t, s, st, rec("a", 44), rec("b", 5))
}

// Every change of an unknown stream says NOT_FOUND and creates nothing.
func testStreamSubsUnknown(t *testing.T, s api.Store) {
	ctx := t.Context()
	now := time.Now()
	x := rec("a", 1)
	wantError(t, s.AddStreamSub(ctx, "nope", x, now), api.CodeNotFound)
	wantError(t, s.RemoveStreamSub(ctx, "nope", x.Subscription, now), api.CodeNotFound)
	wantError(t, s.SetStreamSince(ctx, "nope", x), api.CodeNotFound)
	wantError(t, s.TouchStream(ctx, "nope", now), api.CodeNotFound)
	_, err := s.GetStream(ctx, "nope")
	wantError(t, err, api.CodeNotFound)
}

// PutStream replaces the subscriptions added since, and keeps one of two
// equal subscriptions, the first.
func testStreamSubsPutReplaces(t *testing.T, s api.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	putStream(t, s, "s", now, rec("a", 1))
	if err := s.AddStreamSub(t.Context(), "s", rec("b", 2), now); err != nil {
		t.Fatalf("AddStreamSub: %v", err)
	}
	st := putStream(t, s, "s", now.Add(time.Second), rec("c", 3), rec("a", 4), rec("c", 5))
	wantSubs(t, s, st, rec("c", 3), rec("a", 4))
	st = putStream(t, s, "s", now.Add(2*time.Second))
	wantSubs(t, s, st)
}

// Trim removes a stream with its subscriptions (a stream put again under
// its id has none of them); a change of a stream's subscriptions counts
// as an update, and so does a touch.
func testStreamSubsTrim(t *testing.T, s api.Store) {
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := now.Add(-2 * time.Hour)
	for _, id := range []string{"old", "added", "removed", "touched"} {
		putStream(t, s, id, old, rec("a", 1))
		if err := s.AddStreamSub(ctx, id, rec("b", 2), old); err != nil {
			t.Fatalf("AddStreamSub(%q): %v", id, err)
		}
	}
	if err := s.AddStreamSub(ctx, "added", rec("c", 3), now); err != nil {
		t.Fatalf("AddStreamSub: %v", err)
	}
	if err := s.RemoveStreamSub(ctx, "removed", rec("a", 0).Subscription, now); err != nil {
		t.Fatalf("RemoveStreamSub: %v", err)
	}
	if err := s.TouchStream(ctx, "touched", now); err != nil {
		t.Fatalf("TouchStream: %v", err)
	}
	if err := s.Trim(ctx, api.TrimOptions{Before: now.Add(-time.Hour)}); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	_, err := s.GetStream(ctx, "old")
	wantError(t, err, api.CodeNotFound)
	wantError(t, s.AddStreamSub(ctx, "old", rec("z", 0), now), api.CodeNotFound)
	wantSubs(t, s, api.StreamInfo{ID: "added", User: "u", Start: 3, Updated: now}, rec("a", 1), rec("b", 2), rec("c", 3))
	wantSubs(t, s, api.StreamInfo{ID: "removed", User: "u", Start: 3, Updated: now}, rec("b", 2))
	wantSubs(t, s, api.StreamInfo{ID: "touched", User: "u", Start: 3, Updated: now}, rec("a", 1), rec("b", 2))

	st := putStream(t, s, "old", now)
	wantSubs(t, s, st)
}

// Subscriptions added to one stream at the same time are all kept, each
// writer's in the order it added them. (Read-modify-write of the whole
// state by the caller, GetStream then PutStream, loses most of them.)
func testStreamSubsConcurrentAdds(t *testing.T, s api.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	st := putStream(t, s, "s", now, rec("first", 0))
	sub := func(g, i int) api.StreamSub { return rec(fmt.Sprintf("w%02d/%02d", g, i), int64(i)) }
	runSubWriters(t, func(g, i int) error {
		return s.AddStreamSub(t.Context(), "s", sub(g, i), now)
	})
	got, err := s.GetStream(t.Context(), "s")
	if err != nil {
		t.Fatalf("GetStream: %v", err)
	}
	if len(got.Subs) != 1+writers*subsPerWriter || got.Subs[0] != rec("first", 0) {
		t.Fatalf("after %d concurrent adds the stream has %d subscriptions, want %d, the one put first",
			writers*subsPerWriter, len(got.Subs), 1+writers*subsPerWriter)
	}
	next := make([]int, writers) // each writer's next subscription
	for _, x := range got.Subs[1:] {
		var g, i int
		if _, err := fmt.Sscanf(x.Record, "w%02d/%02d", &g, &i); err != nil || g >= writers || x != sub(g, next[g]) {
			t.Fatalf("subscription %+v out of order: want writer %d's number %d next", x, g, next[g])
		}
		next[g]++
	}
	wantSubs(t, s, st, got.Subs...) // user, start and updated kept
}

// Subscriptions removed from one stream at the same time all go, and
// those not removed stay.
func testStreamSubsConcurrentRemoves(t *testing.T, s api.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	var all, kept []api.StreamSub
	for g := range writers {
		for i := range subsPerWriter {
			x := rec(fmt.Sprintf("w%02d/%02d", g, i), 0)
			all = append(all, x)
			if i%2 == 1 {
				kept = append(kept, x)
			}
		}
	}
	st := putStream(t, s, "s", now, all...)
	runSubWriters(t, func(g, i int) error {
		if i%2 == 1 {
			return nil
		}
		return s.RemoveStreamSub(t.Context(), "s", all[g*subsPerWriter+i].Subscription, now)
	})
	wantSubs(t, s, st, kept...)
}

const subsPerWriter = 20

// runSubWriters runs writers goroutines that each call change(g, i) for i
// in [0, subsPerWriter), and waits for them.
func runSubWriters(t *testing.T, change func(g, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range subsPerWriter {
				if err := change(g, i); err != nil {
					t.Errorf("writer %d, change %d: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
