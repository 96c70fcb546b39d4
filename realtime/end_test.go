package realtime

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// abortSink counts its aborts.
type abortSink struct{ aborts atomic.Int64 }

func (a *abortSink) Write(p []byte) (int, error) { return len(p), nil }
func (a *abortSink) Flush() error                { return nil }
func (a *abortSink) Abort()                      { a.aborts.Add(1) }

func endingStream(sink Sink) *Stream {
	return &Stream{hub: &Hub{}, sink: sink, wake: make(chan struct{}, 1)}
}

// TestEndOnce: many goroutines end a stream at once, a slow disconnect
// among them; the first call decides why, the sink is aborted once, and a
// slow disconnect is counted at most once. Run with -race.
func TestEndOnce(t *testing.T) {
	other := errors.New("write failed")
	for range 50 {
		sink := &abortSink{}
		s := endingStream(sink)
		if s.ended() || s.err() != nil {
			t.Fatal("a new stream has ended")
		}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if i%2 == 0 {
					s.end(ErrSlow)
				} else {
					s.end(other)
				}
			})
		}
		wg.Wait()
		if !s.ended() {
			t.Fatal("not ended")
		}
		slow := s.hub.Stats.SlowDisconnects.Load()
		switch err := s.err(); {
		case err == ErrSlow && slow != 1, err == other && slow != 0:
			t.Fatalf("ended with %v, %d slow disconnects counted", err, slow)
		case err != ErrSlow && err != other:
			t.Fatalf("ended with %v", err)
		}
		if n := sink.aborts.Load(); n != 1 {
			t.Fatalf("sink aborted %d times", n)
		}
		s.end(ErrSlow)
		if s.hub.Stats.SlowDisconnects.Load() != slow {
			t.Fatal("a later end counted a slow disconnect")
		}
	}
}

// TestEndNormal: a normal end (nil) counts nothing, and a sink that Run
// has let go of is not aborted.
func TestEndNormal(t *testing.T) {
	s := endingStream(nil)
	s.end(nil)
	if !s.ended() || s.err() != nil || s.hub.Stats.SlowDisconnects.Load() != 0 {
		t.Fatalf("ended %v, err %v, %d slow disconnects", s.ended(), s.err(), s.hub.Stats.SlowDisconnects.Load())
	}
	s.end(ErrSlow)
	if s.err() != nil || s.hub.Stats.SlowDisconnects.Load() != 0 {
		t.Fatal("an end after a normal end changed it")
	}
}
