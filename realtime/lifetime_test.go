package realtime

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// discardConn is a socket that takes every byte (not a syscall.Conn: no
// look finds it hung up).
type discardConn struct{}

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }

// TestLifetimeEnds: a detached stream whose lifetime is long has no timer
// of its own and ends at a look of watchHangups, within its lifetime less
// up to 10% (and the looks' lateness, which a long lifetime's 10% holds);
// one whose token expires first has a timer. Each ends for its reason.
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
	var mu sync.Mutex
	reasons := make(map[string]string)
	h.Measure(Measures{StreamEnd: func(e StreamEnd) {
		mu.Lock()
		defer mu.Unlock()
		reasons[e.Stream] = e.Reason
	}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	late := h.lookEvery() * 3 / 2
	follow := func(user api.User, timer bool, earliest, latest time.Duration, reason string) {
		t.Helper()
		opened := time.Now()
		s, err := h.Open(ctx, user, []api.Subscription{{Event: "e"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Detach(ctx, discardConn{}); err != nil {
			t.Fatal(err)
		}
		if has := s.det.life != nil; has != timer {
			t.Fatalf("%s: a timer of its own: %v, want %v", reason, has, timer)
		}
		for !s.ended() {
			if time.Since(opened) > 10*time.Second {
				t.Fatalf("%s: the stream did not end", reason)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if lived := time.Since(opened); lived < earliest || lived > latest {
			t.Errorf("%s: the stream lived %v, want %v to %v", reason, lived, earliest, latest)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			got := reasons[s.ID]
			mu.Unlock()
			if got == reason {
				break
			}
			if got != "" || time.Now().After(deadline) {
				t.Fatalf("the stream ended for %q, want %q", got, reason)
			}
		}
	}

	defer func(d time.Duration) { lookedAfter = d }(lookedAfter)
	lookedAfter = life / 2 // MaxLifetime is a long one
	// The slack above the lifetime is for a busy machine, not for the look.
	follow(api.User{}, false, life-life/10-late, life+300*time.Millisecond, EndLifetime)
	follow(api.User{ID: "ada", Expires: time.Now().Add(life / 4)}, true, life/4-50*time.Millisecond, life, EndTokenExpired)
}
