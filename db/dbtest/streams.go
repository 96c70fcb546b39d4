package dbtest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

func miscTests() []test {
	return []test{
		{"Ping", testPing},
		{"CancelledWrite", testCancelledWrite},
		{"WriteAfterClose", testWriteAfterClose},
	}
}

func streamTests() []test {
	return []test{
		{"RoundTrip", testStreamRoundTrip},
		{"Trim", testStreamTrim},
	}
}

// wantStream checks that GetStream returns want.
func wantStream(t *testing.T, s api.Store, want api.StreamInfo) {
	t.Helper()
	got, err := s.GetStream(t.Context(), want.ID)
	if err != nil {
		t.Errorf("GetStream(%q): %v", want.ID, err)
		return
	}
	if got.ID != want.ID || got.User != want.User || got.Start != want.Start || !reflect.DeepEqual(got.Subs, want.Subs) || !got.Updated.Equal(want.Updated) {
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
		Start:   41,
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
		Start:   6,
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
	if err := s.Trim(t.Context(), api.TrimOptions{Before: now.Add(-time.Hour)}); err != nil {
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

// A Write whose context is already cancelled fails and changes nothing,
// every time (tried a few times, to catch a store that races the context
// against its own queue).
func testCancelledWrite(t *testing.T, s api.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 20 {
		cs, err := s.Write(ctx, []api.Write{set("doc", docV1)})
		if err == nil {
			t.Errorf("Write %d with a cancelled context = %s, nil; want an error", i, brief(cs))
			break
		}
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
