package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// gatedStore opens a store whose fsyncs of the log wait until the
// returned open is called; opened reports whether it was.
func gatedStore(t *testing.T, ackWritten bool) (s *Store, open func(), opened *atomic.Bool) {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if ackWritten {
		s.AckEventsWritten()
	}
	gate := make(chan struct{})
	opened = new(atomic.Bool)
	sync := s.wal.fsync
	s.wal.fsync = func() error {
		<-gate
		return sync()
	}
	open = func() {
		if opened.CompareAndSwap(false, true) {
			close(gate)
		}
	}
	t.Cleanup(func() { open(); s.Close() })
	return s, open, opened
}

func publishEvent(s *Store, name string) ([]api.Change, error) {
	return s.Write(context.Background(), []api.Write{{Kind: api.KindEvent, Name: name, Data: json.RawMessage(`"hi"`)}})
}

// TestAckWrittenBeforeFsync: with AckEventsWritten a publish returns while
// the log's fsync is held, with its position; readers see nothing of it
// (neither the log nor the bus) until that fsync returns; and a record
// write in the same state still returns only after its fsync.
func TestAckWrittenBeforeFsync(t *testing.T) {
	s, open, opened := gatedStore(t, true)
	var woken atomic.Bool
	defer s.Bus().Subscribe(api.TopicChanges, func([]byte) { woken.Store(true) })()

	published := make(chan []api.Change, 1)
	go func() {
		cs, err := publishEvent(s, "chat")
		if err != nil {
			t.Error(err)
		}
		published <- cs
	}()
	var cs []api.Change
	select {
	case cs = <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("the publish did not return while its fsync was held")
	}
	if opened.Load() || len(cs) != 1 || cs[0].Seq != 1 {
		t.Fatalf("publish returned %+v (fsync done: %v); want position 1 before the fsync", cs, opened.Load())
	}

	wrote := make(chan bool, 1)
	go func() {
		_, err := s.Write(context.Background(), []api.Write{{Kind: api.KindSet, Name: "r", Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
			return json.RawMessage(`1`), nil
		}}})
		if err != nil {
			t.Error(err)
		}
		wrote <- opened.Load()
	}()

	if got, err := s.Changes(context.Background(), 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("before the fsync, the log shows %+v, %v; want nothing", got, err)
	}
	if head, _, err := s.Snapshot(context.Background(), nil); err != nil || head != 0 {
		t.Fatalf("before the fsync, the head is %d, %v; want 0", head, err)
	}
	if woken.Load() {
		t.Fatal("the bus woke readers before the fsync")
	}

	open()
	if !<-wrote {
		t.Fatal("a record write returned before its fsync")
	}
	got, err := s.Changes(context.Background(), 0, 10)
	if err != nil || len(got) != 2 || got[0].Name != "chat" || got[0].Kind != api.KindEvent || got[1].Name != "r" {
		t.Fatalf("after the fsync, the log shows %+v, %v; want the event, then the record", got, err)
	}
}

// TestAckDurableByDefault: without AckEventsWritten a publish returns only
// once its fsync did.
func TestAckDurableByDefault(t *testing.T) {
	s, open, opened := gatedStore(t, false)
	done := publishHeld(t, s, opened, "a publish returned while its fsync was held")
	open()
	if !<-done {
		t.Fatal("a publish returned before its fsync")
	}
}

// TestAckWrittenFsyncFails: an event answered once written and then lost
// to a failed fsync is never shown to readers, and the store breaks as
// it does in the default mode; nothing is answered twice.
func TestAckWrittenFsyncFails(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AckEventsWritten()
	gate := make(chan struct{})
	s.wal.fsync = func() error { <-gate; return errInjected }
	if _, err := publishEvent(s, "chat"); err != nil {
		t.Fatalf("publish: %v", err)
	}
	close(gate)
	deadline := time.Now().Add(10 * time.Second)
	for s.refusal() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the store did not break after its fsync failed")
		}
		time.Sleep(time.Millisecond)
	}
	if got, err := s.Changes(context.Background(), 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("after a failed fsync the log shows %+v, %v; want nothing", got, err)
	}
	if _, err := publishEvent(s, "chat"); err == nil {
		t.Fatal("a publish on a broken store succeeded")
	}
}

var errInjected = &api.Error{Code: api.CodeInternal, Detail: "injected fsync failure"}

// TestAckWrittenBounded: at most maxEarly events are answered before
// their fsync; with that many waiting for a held fsync, the next publish
// waits for it, as in the default mode.
func TestAckWrittenBounded(t *testing.T) {
	s, open, opened := gatedStore(t, true)
	for i := range maxEarly {
		if _, err := publishEvent(s, "chat"); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if opened.Load() {
		t.Fatal("the gate opened")
	}
	done := publishHeld(t, s, opened, fmt.Sprintf("publish %d returned while %d events waited for a held fsync", maxEarly+1, maxEarly))
	open()
	if !<-done {
		t.Fatal("the publish past the bound returned before its fsync")
	}
	// Once durable, events are answered early again.
	if _, err := publishEvent(s, "chat"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Changes(context.Background(), 0, maxEarly+10); err != nil || len(got) != maxEarly+1 && len(got) != maxEarly+2 {
		t.Fatalf("the log holds %d changes, %v; want %d or %d", len(got), err, maxEarly+1, maxEarly+2)
	}
}

// publishHeld publishes an event on its own goroutine and fails with
// stuck if the publish returns while the fsync is held; the channel then
// says whether the fsync had been let through when it returned.
func publishHeld(t *testing.T, s *Store, opened *atomic.Bool, stuck string) <-chan bool {
	t.Helper()
	done := make(chan bool, 1)
	go func() {
		if _, err := publishEvent(s, "chat"); err != nil {
			t.Error(err)
		}
		done <- opened.Load()
	}()
	select {
	case <-done:
		t.Fatal(stuck)
	case <-time.After(200 * time.Millisecond): // not a bound on speed: an early answer comes within microseconds
	}
	return done
}
