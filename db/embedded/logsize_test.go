package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// storedLogSize reads the running total of the log's size from the file,
// or -1 when there is none.
func storedLogSize(t *testing.T, s *Store) int64 {
	t.Helper()
	n := int64(-1)
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyLogBytes); v != nil {
			n = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// logOf returns the first 100 changes of s's log and the sum of their
// Sizes.
func logOf(t *testing.T, s *Store) ([]api.Change, int64) {
	t.Helper()
	log, err := s.Changes(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, ch := range log {
		size += ch.Size()
	}
	return log, size
}

// The log's size is a running total that every entry adds its
// api.Change.Size to and Trim subtracts from; it survives a reopen, and a
// file without one (written before there was one) gets it from its log.
func TestLogSize(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, options{every: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := range 10 {
		data := json.RawMessage(`"` + strings.Repeat("x", 10*i) + `"`)
		ws := []api.Write{{Kind: api.KindEvent, Name: "e", Data: data, Publisher: strings.Repeat("p", i)}}
		if i%3 == 0 {
			ws = append(ws, api.Write{Kind: api.KindSet, Name: "r", Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return data, nil }})
		}
		if _, err := s.Write(ctx, ws); err != nil {
			t.Fatal(err)
		}
	}
	log, want := logOf(t, s)
	for _, ch := range log {
		if got := entrySize(encodeChange(ch)); got != ch.Size() {
			t.Errorf("entrySize of %+v = %d, want its Size %d", ch, got, ch.Size())
		}
	}
	if err := s.Trim(ctx, api.TrimOptions{}); err != nil { // a checkpoint: the whole log in the file
		t.Fatal(err)
	}
	if got := storedLogSize(t, s); got != want {
		t.Fatalf("the log's size after a checkpoint = %d, want %d", got, want)
	}

	s = reopen(t, s, dir)
	if got := storedLogSize(t, s); got != want {
		t.Fatalf("the log's size after a reopen = %d, want %d", got, want)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyLogBytes) }); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	if got := storedLogSize(t, s); got != want {
		t.Fatalf("the log's size of a file that had none, after a reopen = %d, want %d", got, want)
	}

	if err := s.Trim(ctx, api.TrimOptions{MaxBytes: want - 1}); err != nil {
		t.Fatal(err)
	}
	if got := storedLogSize(t, s); got != want-log[0].Size() {
		t.Errorf("the log's size after trimming its first change = %d, want %d", got, want-log[0].Size())
	}
	s.Close()
}

// reopen closes s and opens dir again, closed when t ends.
func reopen(t *testing.T, s *Store, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestTrimWithinBound: a Trim by size alone of a log within its bound,
// its changes not yet checkpointed included, checkpoints nothing; one
// over its bound checkpoints and cuts what is over; after Close, either
// answers ErrClosed.
func TestTrimWithinBound(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for range 10 {
		if _, err := s.Write(ctx, []api.Write{{Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`"0123456789"`)}}); err != nil {
			t.Fatal(err)
		}
	}
	log, want := logOf(t, s)
	stored := storedLogSize(t, s)
	if stored > 0 {
		t.Fatalf("before the trims the file's log holds %d bytes, want none", stored)
	}

	if err := s.Trim(ctx, api.TrimOptions{MaxBytes: want}); err != nil {
		t.Fatal(err)
	}
	if got := storedLogSize(t, s); got != stored {
		t.Fatalf("a trim within its bound checkpointed: the file's log size went from %d to %d", stored, got)
	}

	if err := s.Trim(ctx, api.TrimOptions{MaxBytes: want - 1}); err != nil {
		t.Fatal(err)
	}
	if got := storedLogSize(t, s); got != want-log[0].Size() {
		t.Fatalf("after a trim one byte under the log's size, the file's log size is %d, want %d", got, want-log[0].Size())
	}
	if after, err := s.Changes(ctx, log[0].Seq, 100); err != nil || len(after) != len(log)-1 {
		t.Fatalf("after the trims the log holds %d changes after the first (%v), want %d", len(after), err, len(log)-1)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Trim(ctx, api.TrimOptions{MaxBytes: want}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a trim by size after Close = %v, want ErrClosed", err)
	}
}
