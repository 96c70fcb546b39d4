package commit_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

var errClosed = errors.New("closed")

// recorder is a backend that answers each request with one change named
// after its work, and records the groups it was given.
type recorder struct {
	mu     sync.Mutex
	groups [][]string
	hold   chan struct{} // when set, Commit waits for it first
}

func (b *recorder) commit(group []*commit.Request[string]) {
	if b.hold != nil {
		<-b.hold
	}
	var works []string
	for _, r := range group {
		works = append(works, r.Work)
	}
	b.mu.Lock()
	b.groups = append(b.groups, works)
	b.mu.Unlock()
	for _, r := range group {
		r.Changes = []api.Change{{Name: r.Work}}
		r.Answer()
	}
}

func (b *recorder) sizes() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n []int
	for _, g := range b.groups {
		n = append(n, len(g))
	}
	return n
}

// do runs c.Do(work) in a goroutine of its own.
func do(c *commit.Committer[string], work string, errs chan<- error) {
	go func() {
		changes, err := c.Do(context.Background(), work)
		if err == nil && (len(changes) != 1 || changes[0].Name != work) {
			err = errors.New("answered with another request's changes")
		}
		errs <- err
	}()
}

// TestGroups: the requests that queue while a group commits form the next
// group, each is answered with its own changes; Close answers every
// request queued and refuses those made after it.
func TestGroups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &recorder{hold: make(chan struct{})}
		var stopped bool
		c := commit.Start(commit.Config[string]{Commit: b.commit, Closed: errClosed, Stop: func() { stopped = true }})
		errs := make(chan error, 20)
		do(c, "first", errs)
		synctest.Wait() // the first group holds it, waiting
		for _, w := range []string{"a", "b", "c", "d"} {
			do(c, w, errs)
		}
		synctest.Wait()
		b.hold <- struct{}{}
		b.hold <- struct{}{}
		for range 5 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if got := b.sizes(); !slices.Equal(got, []int{1, 4}) {
			t.Fatalf("groups of %v, want [1 4]", got)
		}

		do(c, "queued", errs) // taken into a group held until Close is under way
		synctest.Wait()
		do(c, "left", errs) // still queued when the loop stops
		synctest.Wait()
		closed := make(chan bool)
		go func() { closed <- c.Close() }()
		synctest.Wait()
		close(b.hold)
		if !<-closed || !stopped {
			t.Fatalf("Close did not close, or Stop was not called")
		}
		// The one under way commits. The loop may take the queued one into
		// a last group before it sees Close: either way it is answered.
		if a, b := <-errs, <-errs; (a != nil && b != nil) || (a != nil && a != errClosed) || (b != nil && b != errClosed) {
			t.Fatalf("the requests under way and queued at Close: %v, %v; want nil and nil or %v", a, b, errClosed)
		}
		if _, err := c.Do(context.Background(), "late"); err != errClosed {
			t.Fatalf("Do after Close = %v, want %v", err, errClosed)
		}
		if c.Close() {
			t.Fatal("a second Close closed again")
		}
	})
}

// TestLinger: after a group of several, the next waits (at most Linger)
// for as many requests; after a group of one, nobody waits.
func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &recorder{hold: make(chan struct{})}
		c := commit.Start(commit.Config[string]{Commit: b.commit, Closed: errClosed, Linger: time.Millisecond})
		defer c.Close()
		errs := make(chan error, 20)
		do(c, "x", errs)
		synctest.Wait()
		do(c, "y", errs)
		do(c, "z", errs)
		synctest.Wait()
		close(b.hold)
		for range 3 {
			<-errs
		}
		// The last group held 2: one request waits for a second.
		start := time.Now()
		do(c, "p", errs)
		time.Sleep(200 * time.Microsecond)
		do(c, "q", errs)
		<-errs
		<-errs
		// Then a lone one waits the whole linger, and the next none.
		do(c, "r", errs)
		<-errs
		if waited := time.Since(start); waited != 1200*time.Microsecond {
			t.Fatalf("waited %v, want 200µs and then a whole linger", waited)
		}
		start = time.Now()
		do(c, "s", errs)
		<-errs
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("a lone writer after a group of one waited %v", waited)
		}
		if got := b.sizes(); !slices.Equal(got, []int{1, 2, 2, 1, 1}) {
			t.Fatalf("groups of %v, want [1 2 2 1 1]", got)
		}
	})
}

// TestTimer: OnTimer runs in the loop when Timer's channel fires, and a
// canceled context fails Do before anything is queued.
func TestTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &recorder{}
		fired := 0
		c := commit.Start(commit.Config[string]{Commit: b.commit, Closed: errClosed,
			Timer: func() <-chan time.Time {
				if fired < 2 {
					return time.After(time.Second)
				}
				return nil
			},
			OnTimer: func() { fired++ },
		})
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if fired != 2 {
			t.Fatalf("OnTimer ran %d times, want 2", fired)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.Do(ctx, "no"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Do with a canceled context = %v", err)
		}
		c.Close()
		if len(b.sizes()) != 0 {
			t.Fatalf("groups %v, want none", b.sizes())
		}
	})
}
