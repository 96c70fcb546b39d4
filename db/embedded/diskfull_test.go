package embedded

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// diskFull makes checkpoints fail as a full disk does, while it is on.
type diskFull struct{ on atomic.Bool }

func (d *diskFull) fault() error {
	if d.on.Load() {
		return &fs.PathError{Op: "write", Path: "switchboard.db", Err: syscall.ENOSPC}
	}
	return nil
}

// openFull opens dir with checkpoints that fail while full is on, retried
// every few milliseconds.
func openFull(t *testing.T, dir string, full *diskFull) (*Store, error) {
	t.Helper()
	s, err := open(dir, options{every: checkpointChanges, retry: 5 * time.Millisecond, fault: full.fault})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func event(data string) []api.Write {
	return []api.Write{{Kind: api.KindEvent, Name: "e", Data: json.RawMessage(data)}}
}

func setX(data string) []api.Write {
	return []api.Write{{Kind: api.KindSet, Name: "x", Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
		return json.RawMessage(data), nil
	}}}
}

// wantLog checks that the log holds changes whose data are want, in order.
func wantLog(t *testing.T, s *Store, want ...string) {
	t.Helper()
	cs, err := s.Changes(t.Context(), 0, 100)
	var got []string
	for _, c := range cs {
		got = append(got, string(c.Data))
	}
	if err != nil || len(got) != len(want) || (len(want) > 0 && !equal(got, want)) {
		t.Errorf("the log holds %q, %v; want %q", got, err, want)
	}
}

func equal(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// After a disk-full the server starts again on its own. Open replays the
// write-ahead log into memory though the checkpoint into the bbolt file
// fails: reads see every acknowledged write, while writes and Ping fail
// with the disk's error. Once the disk has room the checkpoint is retried
// and writes work again, without a restart.
func TestOpenWhileTheDiskIsFull(t *testing.T) {
	dir := t.TempDir()
	full := &diskFull{}
	s, err := openFull(t, dir, full)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, w := range [][]api.Write{setX(`1`), event(`2`)} {
		if _, err := s.Write(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	full.on.Store(true)
	if err := s.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close with a full disk = %v, want its checkpoint's error", err)
	}

	if s, err = openFull(t, dir, full); err != nil {
		t.Fatalf("Open while the disk is full: %v", err)
	}
	if rec, err := s.Get(ctx, "x"); err != nil || string(rec.Data) != `1` {
		t.Errorf("x while the disk is full = %+v, %v; want 1", rec, err)
	}
	wantLog(t, s, `1`, `2`)
	if _, err := s.Write(ctx, event(`3`)); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write while the disk is full = %v, want the disk's error", err)
	}
	if err := s.PutStream(ctx, api.StreamInfo{ID: "s"}); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("PutStream while the disk is full = %v, want the disk's error", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Ping while the disk is full = %v, want the disk's error", err)
	}

	full.on.Store(false)
	for deadline := time.Now().Add(5 * time.Second); s.Ping(ctx) != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Ping 5s after the disk has room: %v", s.Ping(ctx))
		}
	}
	if cs, err := s.Write(ctx, setX(`3`)); err != nil || cs[0].Seq != 3 || cs[0].Version != 2 {
		t.Fatalf("Write after the disk has room = %+v, %v; want x at version 2, position 3", cs, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantLog(t, s, `1`, `2`, `3`)
}

// A write that failed does not come back after a restart, also when the
// disk is full: Close cannot checkpoint then, which is what otherwise
// leaves failed writes behind (the checkpoint starts a new epoch of the
// write-ahead log). The log is cut after the last acknowledged write when
// the store breaks.
func TestFailedWriteStaysFailedWhenTheDiskIsFull(t *testing.T) {
	dir := t.TempDir()
	full := &diskFull{}
	s, err := openFull(t, dir, full)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.Write(ctx, event(`1`)); err != nil {
		t.Fatal(err)
	}
	full.on.Store(true)
	s.wal.fsync = func() error { return &fs.PathError{Op: "sync", Path: "switchboard.wal", Err: syscall.ENOSPC} }
	for range 3 {
		if _, err := s.Write(ctx, event(`2`)); err == nil {
			t.Fatal("the write whose fsync failed succeeded")
		}
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close with a full disk = nil, want its checkpoint's error")
	}

	if s, err = openFull(t, dir, full); err != nil {
		t.Fatalf("Open while the disk is full: %v", err)
	}
	wantLog(t, s, `1`)
	s.Close()
	full.on.Store(false)
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantLog(t, s, `1`)
}

// A checkpoint that fails while the store runs (the disk filled up) stalls
// it the same way: writes and Ping fail with the disk's error instead of
// filling what the write-ahead log has left, and when the disk has room
// the store goes on by itself (however many writes it refuses meanwhile),
// having lost nothing.
func TestCheckpointFailureStallsWrites(t *testing.T) {
	dir := t.TempDir()
	full := &diskFull{}
	s, err := openFull(t, dir, full)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.Write(ctx, setX(`1`)); err != nil {
		t.Fatal(err)
	}
	full.on.Store(true)
	if err := s.Trim(ctx, api.TrimOptions{}); !errors.Is(err, syscall.ENOSPC) { // Trim checkpoints first
		t.Fatalf("Trim with a full disk = %v, want its checkpoint's error", err)
	}
	if _, err := s.Write(ctx, event(`2`)); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write after a checkpoint failed = %v, want the disk's error", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Ping after a checkpoint failed = %v, want the disk's error", err)
	}
	full.on.Store(false)
	// Writes are refused until the retry, and they must not put it off.
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := s.Write(ctx, setX(`3`))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Write 5s after the disk has room: %v", err)
		}
	}
	s = reopen(t, s, dir)
	wantLog(t, s, `1`, `3`)
}

// fullDirEnv names an empty directory on a small file system of its own
// for TestOnARealFullDisk, which fills it up; for example, as root:
//
//	mount -t tmpfs -o size=24m tmpfs /mnt/full && EMBEDDED_FULL_DIR=/mnt/full go test -run OnARealFullDisk ./db/embedded
const fullDirEnv = "EMBEDDED_FULL_DIR"

// TestOnARealFullDisk is TestOpenWhileTheDiskIsFull on a disk that is
// really full, so that bbolt's and the log's own ways of failing are the
// real ones: the store writes until it fails, opens again with the disk
// full, and takes writes again once a filler file is removed, with every
// acknowledged write there and no gap.
func TestOnARealFullDisk(t *testing.T) {
	root := os.Getenv(fullDirEnv)
	if root == "" {
		t.Skip(fullDirEnv + " is not set")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(root, "filler") // all but 8 MiB
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "data")
	t.Cleanup(func() { os.RemoveAll(dir); os.Remove(filler) })
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	data := `"` + strings.Repeat("x", 1000) + `"`
	acked := 0
	for ; ; acked++ {
		if _, err := s.Write(ctx, event(data)); err != nil {
			t.Logf("%d writes acknowledged, then: %v", acked, err)
			break
		}
	}
	t.Logf("Close: %v", s.Close())
	if s, err = Open(dir); err != nil {
		t.Fatalf("Open while the disk is full: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping while the disk is full = nil, want its error")
	}
	os.Remove(filler)
	for deadline := time.Now().Add(3 * checkpointRetry); s.Ping(ctx) != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Ping after the disk has room: %v", s.Ping(ctx))
		}
	}
	if _, err := s.Write(ctx, event(`1`)); err != nil {
		t.Fatalf("Write after the disk has room: %v", err)
	}
	cs, err := s.Changes(ctx, 0, acked+10)
	if err != nil || len(cs) != acked+1 || cs[len(cs)-1].Seq != int64(acked+1) {
		t.Errorf("the log holds %d changes, %v; want the %d acknowledged and the last one, with no gap", len(cs), err, acked)
	}
}
