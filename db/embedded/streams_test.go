package embedded

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
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

func TestStreamHeaderCodec(t *testing.T) {
	for _, h := range []streamHeader{
		{ID: "a", User: "alice", Start: 42, Updated: time.Date(2026, 12, 7, 1, 2, 3, 456789012, time.UTC), Next: 3},
		{ID: "b"}, // no user, the zero time
		{ID: "c", User: "ü\x00", Start: -1, Updated: time.Unix(-5, 1).UTC(), Next: 1 << 63},
	} {
		v := encodeHeader(&h)
		got, err := decodeHeader(h.ID, v)
		if err != nil || !reflect.DeepEqual(*got, h) {
			t.Errorf("decodeHeader(encodeHeader(%+v)) = %+v, %v", h, got, err)
		}
		for n := range len(v) {
			if _, err := decodeHeader(h.ID, v[:n]); err == nil {
				t.Errorf("header %q cut to %d bytes decodes", h.ID, n)
			}
		}
		if _, err := decodeHeader(h.ID, append(v, 0)); err == nil {
			t.Errorf("header %q with a byte more decodes", h.ID)
		}
	}
	if _, err := decodeHeader("a", []byte{headerBinary, 0, 0, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0}); !errors.Is(err, errHeader) {
		t.Errorf("a header with 1e9 nanoseconds: %v, want errHeader", err)
	}
}

func FuzzStreamHeader(f *testing.F) {
	f.Add(encodeHeader(&streamHeader{User: "alice", Start: 42, Updated: time.Now(), Next: 3}))
	f.Add([]byte(`{"id":"a","user":"u","updated":"2026-12-07T01:02:03Z","next":2}`))
	f.Add([]byte{headerBinary, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		h, err := decodeHeader("id", v)
		if err != nil || len(v) == 0 || v[0] != headerBinary {
			return
		}
		again, err := decodeHeader("id", encodeHeader(h))
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("%q decodes to %+v, which encodes to what decodes to %+v, %v", v, h, again, err)
		}
	})
}

// A file whose stream headers are JSON (written before they were binary)
// opens with its streams whole, and a stream that changes is written in
// binary.
func TestJSONStreamHeaders(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := s.PutStream(t.Context(), api.StreamInfo{ID: "s", User: "u", Start: 4, Updated: now, Subs: []api.StreamSub{recSub("a", 1)}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	header := func(db *bolt.DB) (v []byte) {
		db.View(func(tx *bolt.Tx) error {
			v = bytes.Clone(tx.Bucket(bucketStreams).Get([]byte("s")))
			return nil
		})
		return v
	}
	db, err := bolt.Open(filepath.Join(dir, "switchboard.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := header(db); len(v) == 0 || v[0] != headerBinary {
		t.Fatalf("the header is %q, want binary", v)
	}
	old, _ := json.Marshal(streamHeader{ID: "s", User: "u", Start: 4, Updated: now, Next: 1})
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketStreams).Put([]byte("s"), old) })
	if err != nil || db.Close() != nil {
		t.Fatal(err)
	}

	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	got := wantStreamSubs(t, s, "s", recSub("a", 1))
	if got.User != "u" || got.Start != 4 || !got.Updated.Equal(now) {
		t.Errorf("the JSON header reads as %+v", got)
	}
	if err := s.AddStreamSub(t.Context(), "s", recSub("b", 2), now); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	got = wantStreamSubs(t, s, "s", recSub("a", 1), recSub("b", 2))
	if got.User != "u" || got.Start != 4 || !got.Updated.Equal(now) {
		t.Errorf("the header rewritten reads as %+v", got)
	}
	s.Close()
	if db, err = bolt.Open(filepath.Join(dir, "switchboard.db"), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v := header(db); len(v) == 0 || v[0] != headerBinary {
		t.Errorf("the header after a change is %q, want binary", v)
	}
}

// A stream's header takes about 20 bytes in the file (JSON took about
// 130), so that streams cost few pages, in the file and in bbolt's pool
// of page buffers.
func TestStreamHeadersSmall(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var wg sync.WaitGroup
	for w := range 8 { // writers together: their puts share fsyncs
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				id := fmt.Sprintf("%x", sha256.Sum256(fmt.Append(nil, i)))[:16]
				if err := s.PutStream(t.Context(), api.StreamInfo{ID: id, User: "user-" + id[:4], Updated: time.Now()}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, "switchboard.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketStreams).Stats()
		// Per stream: bbolt's 16-byte element, the 16-byte key, the header.
		if st.KeyN != n || st.LeafInuse > n*(16+16+32) {
			t.Errorf("%d streams take %d bytes of leaf pages, want %d streams in at most %d", st.KeyN, st.LeafInuse, n, n*(16+16+32))
		}
		return nil
	})
}
