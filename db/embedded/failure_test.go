package embedded

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// After the log fails, every write fails with its error, Ping reports it,
// and what was committed before still reads.
func TestWALFailureBreaksTheStore(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	event := []api.Write{{Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`1`)}}
	before, err := s.Write(ctx, event)
	if err != nil {
		t.Fatal(err)
	}
	s.wal.f.Close() // every write and fsync of the log fails from now on
	for range 2 {
		if cs, err := s.Write(ctx, event); err == nil {
			t.Fatalf("Write after the log failed = %+v, want an error", cs)
		}
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping after the log failed = nil, want its error")
	}
	if cs, err := s.Changes(ctx, 0, 10); err != nil || len(cs) != 1 || cs[0].Seq != before[0].Seq {
		t.Errorf("Changes after the log failed = %+v, %v; want the change made before", cs, err)
	}
	if err := s.Close(); err == nil {
		t.Error("Close after the log failed = nil, want the error of closing it")
	}
}

// A write prepared while an fsync was failing is refused too, though the
// next fsync would succeed: it was computed on the state that failed.
// Nothing after the failure is published, and the log keeps no gap.
func TestWriteAfterFailedFsync(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	set := func(apply func(json.RawMessage, bool) (json.RawMessage, error)) []api.Write {
		return []api.Write{{Kind: api.KindSet, Name: "x", Apply: apply}}
	}
	to := func(v string) func(json.RawMessage, bool) (json.RawMessage, error) {
		return func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(v), nil }
	}
	if _, err := s.Write(ctx, set(to(`1`))); err != nil {
		t.Fatal(err)
	}

	syncing, release := make(chan struct{}), make(chan struct{})
	first := true
	s.wal.fsync = func() error {
		if !first {
			return nil
		}
		first = false
		close(syncing)
		<-release
		return errors.New("injected fsync failure")
	}
	w1 := make(chan error)
	go func() { _, err := s.Write(ctx, set(to(`2`))); w1 <- err }()
	<-syncing // w1's fsync is under way

	applying, proceed := make(chan struct{}), make(chan struct{})
	w2 := make(chan error)
	go func() {
		_, err := s.Write(ctx, set(func(cur json.RawMessage, _ bool) (json.RawMessage, error) {
			close(applying)
			<-proceed
			return append(append(json.RawMessage(`[`), cur...), ']'), nil
		}))
		w2 <- err
	}()
	<-applying // w2 is prepared on w1's state
	close(release)
	if err := <-w1; err == nil {
		t.Fatal("the write whose fsync failed succeeded")
	}
	close(proceed)
	if err := <-w2; err == nil {
		t.Error("a write prepared on the failed one was acknowledged")
	}
	if cs, err := s.Changes(ctx, 0, 10); err != nil || len(cs) != 1 || string(cs[0].Data) != `1` {
		t.Errorf("the log after the failure = %+v, %v; want only the first write", cs, err)
	}
	if rec, err := s.Get(ctx, "x"); err != nil || string(rec.Data) != `1` {
		t.Errorf("x after the failure = %+v, %v; want 1", rec, err)
	}
}

// A write whose fsync failed does not come back when the store is opened
// again, though its bytes reached the file.
func TestFailedWriteStaysFailed(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.wal.fsync = func() error { return errors.New("injected fsync failure") }
	if _, err := s.Write(t.Context(), []api.Write{{Kind: api.KindEvent, Name: "e", Data: json.RawMessage(`1`)}}); err == nil {
		t.Fatal("the write whose fsync failed succeeded")
	}
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cs, err := s.Changes(t.Context(), 0, 10); err != nil || len(cs) != 0 {
		t.Errorf("after reopening, the log = %+v, %v; want nothing", cs, err)
	}
}
