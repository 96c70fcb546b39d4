package realtime_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// TestFirstStream: a stream that opens while no other is open puts a
// token in FirstStream; one that opens beside it does not; once every
// stream has ended, the next one does again.
func TestFirstStream(t *testing.T) {
	f := newFixture(t, realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 4096})
	token := func() bool {
		select {
		case <-f.hub.FirstStream():
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}
	open := func() (end func()) {
		s, err := f.hub.Open(t.Context(), api.User{}, []api.Subscription{{Event: "e"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		r, w := io.Pipe()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.CloseWithError(s.Run(ctx, &pipeSink{w: w}))
		}()
		frames := readFrames(r)
		if got := next(t, frames, true); got[:6] != "ready " {
			t.Fatalf("first frame %q, want ready", got)
		}
		return func() { cancel(); r.Close(); <-done }
	}
	if token() {
		t.Fatal("a token before any stream")
	}
	end1 := open()
	if !token() {
		t.Fatal("no token for the first stream")
	}
	end2 := open()
	if token() {
		t.Fatal("a token for a second stream beside the first")
	}
	end1()
	end2()
	waitStreams(t, f.hub, 0)
	end3 := open()
	defer end3()
	if !token() {
		t.Fatal("no token for a stream that opened once every other had ended")
	}
}
