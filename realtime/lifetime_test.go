package realtime

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// discardConn is a socket that takes every byte.
type discardConn struct{}

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }

// TestLifetimeEnds: a detached stream whose lifetime is long has no timer
// of its own and ends at a look of watchHangups once its lifetime is over;
// one whose token expires first has a timer, and ends on time.
func TestLifetimeEnds(t *testing.T) {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	const life = 400 * time.Millisecond
	h := NewHub(store, store.Bus(), AllowAll{}, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: life, Retry: time.Second, BufferBytes: 1 << 20,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	detach := func(user api.User) *Stream {
		t.Helper()
		s, err := h.Open(ctx, user, []api.Subscription{{Event: "e"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Detach(ctx, discardConn{}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	waitEnd := func(s *Stream, earliest time.Duration, opened time.Time) {
		t.Helper()
		for !s.ended() {
			if time.Since(opened) > 10*time.Second {
				t.Fatal("the stream did not end")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if lived := time.Since(opened); lived < earliest {
			t.Fatalf("the stream ended after %v, before its lifetime", lived)
		}
	}

	defer func(d time.Duration) { lookedAfter = d }(lookedAfter)
	lookedAfter = life / 2 // MaxLifetime is a long one, a token's quarter of it a short one
	opened := time.Now()
	s := detach(api.User{})
	if s.det.life != nil {
		t.Fatal("a long lifetime has a timer")
	}
	waitEnd(s, life*9/10, opened)

	opened = time.Now()
	s = detach(api.User{ID: "ada", Expires: opened.Add(life / 4)})
	if s.det.life == nil {
		t.Fatal("a lifetime that the token cut short has no timer")
	}
	waitEnd(s, life/4-50*time.Millisecond, opened)
}
