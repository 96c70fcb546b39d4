package embedded

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

func recSub(name string, since int64) api.StreamSub {
	return api.StreamSub{Subscription: api.Subscription{Record: name}, Since: since}
}

func wantStreamSubs(t *testing.T, s *Store, id string, want ...api.StreamSub) api.StreamInfo {
	t.Helper()
	got, err := s.GetStream(t.Context(), id)
	if err != nil {
		t.Fatalf("GetStream(%q): %v", id, err)
	}
	if !slices.Equal(got.Subs, want) {
		t.Fatalf("GetStream(%q).Subs = %+v, want %+v", id, got.Subs, want)
	}
	return got
}

// The ops of a stream since the last checkpoint come back from the log
// after a crash (the files copied as they are while the store is open),
// and from the file after Close.
func TestStreamOpsRecovered(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, options{every: 1 << 20, retry: checkpointRetry})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutStream(ctx, api.StreamInfo{ID: "s", User: "u", Start: 2, Updated: now, Subs: []api.StreamSub{recSub("a", 1), recSub("b", 2)}}))
	must(s.AddStreamSub(ctx, "s", recSub("c", 3), now))
	must(s.RemoveStreamSub(ctx, "s", recSub("a", 0).Subscription, now))
	must(s.SetStreamSince(ctx, "s", recSub("b", 20)))
	must(s.AddStreamSub(ctx, "s", recSub("a", 4), now))
	must(s.TouchStream(ctx, "s", now.Add(time.Minute)))
	want := []api.StreamSub{recSub("b", 20), recSub("c", 3), recSub("a", 4)}
	wantStreamSubs(t, s, "s", want...)

	crashed := t.TempDir()
	for _, f := range []string{"switchboard.db", "switchboard.wal"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		must(err)
		must(os.WriteFile(filepath.Join(crashed, f), data, 0o600))
	}
	c, err := Open(crashed)
	must(err)
	got := wantStreamSubs(t, c, "s", want...)
	if got.User != "u" || got.Start != 2 || !got.Updated.Equal(now.Add(time.Minute)) {
		t.Errorf("after a crash the stream is %+v", got)
	}
	must(c.Close())

	must(s.Close())
	s, err = Open(dir)
	must(err)
	wantStreamSubs(t, s, "s", want...)
}

// A file written before subscriptions had keys of their own (the header
// held the whole stream) opens with its streams whole, in order, and
// changeable one subscription at a time.
func TestLegacyStreams(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "switchboard.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	legacy := api.StreamInfo{ID: "old", User: "u", Start: 5, Updated: now,
		Subs: []api.StreamSub{recSub("z", 7), recSub("a", 0), {Subscription: api.Subscription{Event: "chat/*"}}}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketLog, bucketStreams, bucketMeta} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		v, err := json.Marshal(legacy)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketStreams).Put([]byte(legacy.ID), v)
	})
	if err != nil || db.Close() != nil {
		t.Fatal(err)
	}

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	got := wantStreamSubs(t, s, "old", legacy.Subs...)
	if got.User != "u" || got.Start != 5 || !got.Updated.Equal(now) {
		t.Errorf("the legacy stream reads as %+v", got)
	}
	if err := s.AddStreamSub(t.Context(), "old", recSub("b", 9), now); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	wantStreamSubs(t, s, "old", append(legacy.Subs, recSub("b", 9))...)
}

// A change of one subscription writes one small log entry, however many
// the stream has: the log does not grow with the stream.
func TestStreamOpSize(t *testing.T) {
	s, err := open(t.TempDir(), options{every: 1 << 20, retry: checkpointRetry})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	subs := make([]api.StreamSub, 1000)
	for i := range subs {
		subs[i] = recSub(fmt.Sprintf("records/%05d", i), int64(i))
	}
	if err := s.PutStream(ctx, api.StreamInfo{ID: "s", User: "u", Subs: subs, Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	changes := []func() error{
		func() error { return s.AddStreamSub(ctx, "s", recSub("records/new", 1), time.Now()) },
		func() error { return s.SetStreamSince(ctx, "s", recSub("records/new", 2)) },
		func() error { return s.RemoveStreamSub(ctx, "s", recSub("records/00500", 0).Subscription, time.Now()) },
		func() error { return s.TouchStream(ctx, "s", time.Now()) },
	}
	for i, change := range changes {
		before := s.wal.off // the commit loop wrote it before the change was answered
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if n := s.wal.off - before; n > 256 {
			t.Errorf("change %d of a stream of 1000 subscriptions wrote %d bytes to the log", i, n)
		}
	}
}
