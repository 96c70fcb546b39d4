package postgres_test

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// woken follows the highest position a store's handlers of the changes
// topic were woken for.
type woken struct {
	mu    sync.Mutex
	head  int64
	moved chan struct{} // closed when head moves
}

func wakes(t *testing.T, s *postgres.Store) *woken {
	w := &woken{moved: make(chan struct{})}
	t.Cleanup(s.Bus().SubscribeWake(api.TopicChanges, func(head int64) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if head > w.head {
			w.head = head
			close(w.moved)
			w.moved = make(chan struct{})
		}
	}))
	return w
}

// reaches reports whether the handlers are woken for seq within d.
func (w *woken) reaches(seq int64, d time.Duration) bool {
	deadline := time.After(d)
	for {
		w.mu.Lock()
		head, moved := w.head, w.moved
		w.mu.Unlock()
		if head >= seq {
			return true
		}
		select {
		case <-moved:
		case <-deadline:
			return false
		}
	}
}

// feedTo is feed, stopped when t ends.
func feedTo(t *testing.T, from, to *postgres.Store) (stop func()) {
	stop = feed(t, from, to)
	t.Cleanup(stop)
	return stop
}

// feed feeds the announcements of from's groups to to, as a feed over
// the network would (package peer), through a queue of its own, since a
// feed's send must not block. stop ends it in order, as package peer's
// feeds end: from stops sending, then to takes what was sent. Nothing
// reads the log's head after it: whatever from did not send, it must
// have notified.
func feed(t *testing.T, from, to *postgres.Store) (stop func()) {
	var mu sync.Mutex
	var queue []string
	more := make(chan struct{}, 1)
	end := from.Feed(to.ListenerPID(), func(notes []string) bool {
		mu.Lock()
		queue = append(queue, notes...)
		mu.Unlock()
		select {
		case more <- struct{}{}:
		default:
		}
		return true
	})
	done, stopped := make(chan struct{}), make(chan struct{})
	take := func() {
		mu.Lock()
		notes := queue
		queue = nil
		mu.Unlock()
		for i, n := range notes {
			to.Relayed(n, i < len(notes)-1)
		}
	}
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				take()
				return
			case <-more:
				take()
			}
		}
	}()
	return sync.OnceFunc(func() {
		end()
		close(done)
		<-stopped
	})
}

// publish writes an event on s and returns its position.
func publish(t *testing.T, s *postgres.Store) int64 {
	t.Helper()
	cs, err := s.Write(t.Context(), []api.Write{event("news", `"x"`, "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return cs[0].Seq
}

// notifies reports whether a write on s sent a NOTIFY, and fails t unless
// every one of others is woken for it within 5 s. s must have no other
// writer: its notification is the one after the groups announced before.
func notifies(t *testing.T, s *postgres.Store, others ...*woken) bool {
	t.Helper()
	groups, before := s.Notifications()
	seq := publish(t, s)
	for i, o := range others {
		if !o.reaches(seq, 5*time.Second) {
			t.Fatalf("instance %d was not woken for position %d within 5s", i, seq)
		}
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if g, after := s.Notifications(); g > groups {
			return after > before
		}
		if time.Now().After(end) {
			t.Fatalf("the group of position %d was not announced within 5s", seq)
		}
	}
}

// silent writes on s until a write sends no NOTIFY (at most for 10 s),
// each one reaching others, and fails t if none does.
func silent(t *testing.T, s *postgres.Store, others ...*woken) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); notifies(t, s, others...); {
		if time.Now().After(end) {
			t.Fatal("every write sends a NOTIFY")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settledPair opens two stores on a database of their own, settled, with
// watchHead off (only a NOTIFY or a feed wakes an instance) and checks
// of the feeds that fail repeated after recheck, and follows b's
// wake-ups.
func settledPair(t *testing.T, recheck time.Duration) (url string, a, b *postgres.Store, onB *woken) {
	postgres.SetHeadCheck(t, time.Hour)
	postgres.SetRecheck(t, recheck)
	url = pgtest.NewDatabase(t)
	a, b = open(t, url), open(t, url)
	a.Settle(t.Context())
	b.Settle(t.Context())
	return url, a, b, wakes(t, b)
}

// An instance's groups go without a NOTIFY once every other instance that
// listens takes them from a feed, and every instance still learns of each
// of them at once (watchHead, which would find a lost one within a
// second, is off): one that begins to listen without a feed is notified
// from its first group on, and so is one whose feed ends.
func TestFeedsTakeThePlaceOfNotify(t *testing.T) {
	url, a, b, onB := settledPair(t, 50*time.Millisecond)
	ctx := t.Context()
	if !notifies(t, a, onB) {
		t.Fatal("a write sent no NOTIFY while an instance without a feed listens")
	}
	stopB := feedTo(t, a, b)
	silent(t, a, onB)
	for range 20 {
		if notifies(t, a, onB) {
			t.Fatal("a write sent a NOTIFY while every instance has a feed")
		}
	}

	c := open(t, url) // begins to listen, without a feed
	c.Settle(ctx)
	onC := wakes(t, c)
	for range 5 {
		if !notifies(t, a, onB, onC) {
			t.Fatal("a write sent no NOTIFY while an instance without a feed listens")
		}
	}
	stopC := feedTo(t, a, c)
	silent(t, a, onB, onC)

	stopB()
	if !notifies(t, a, onB, onC) {
		t.Fatal("a write sent no NOTIFY after a feed ended")
	}
	stopC()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !notifies(t, a, onB) {
		t.Fatal("a write sent no NOTIFY while an instance without a feed listens")
	}
	feedTo(t, a, b)
	silent(t, a, onB)

	// A feed that does not take a group (it fell behind, or broke) ends
	// there, and that very group is notified.
	var refuse atomic.Bool
	t.Cleanup(a.Feed(b.ListenerPID(), func([]string) bool { return !refuse.Load() }))
	silent(t, a, onB)
	refuse.Store(true)
	if !notifies(t, a, onB) {
		t.Fatal("a group that a feed did not take sent no NOTIFY")
	}
}

// Many writers race feeds that end and begin again and instances that
// come and go: after each burst of writes, every instance is woken for
// its last position within a few seconds, with no check of the head to
// find what a feed lost.
func TestFeedsUnderChurn(t *testing.T) {
	url, a, b, onB := settledPair(t, 20*time.Millisecond)
	ctx := t.Context()

	churned := make(chan struct{})
	done := make(chan struct{})
	var feeds atomic.Int64
	go func() { // b's feed ends and begins again
		defer close(churned)
		for {
			stop := feed(t, a, b)
			feeds.Add(1)
			select {
			case <-done:
				stop()
				return
			case <-time.After(time.Duration(rand.IntN(30)) * time.Millisecond):
			}
			stop()
		}
	}()
	stopChurn := sync.OnceFunc(func() { close(done); <-churned })
	t.Cleanup(stopChurn)

	for burst := range 30 {
		var c *postgres.Store
		var onC *woken
		stopC := func() {}
		if burst%3 == 1 { // another instance comes for a burst, fed half the time
			c = open(t, url)
			c.Settle(ctx)
			onC = wakes(t, c)
			if burst%2 == 0 {
				stopC = feedTo(t, a, c)
			}
		}
		var last atomic.Int64
		var writers sync.WaitGroup
		for range 8 {
			writers.Add(1)
			go func() {
				defer writers.Done()
				for range 10 {
					cs, err := a.Write(ctx, []api.Write{event("news", `"x"`, "")})
					if err != nil {
						t.Errorf("Write: %v", err)
						return
					}
					for seq := last.Load(); seq < cs[0].Seq && !last.CompareAndSwap(seq, cs[0].Seq); seq = last.Load() {
					}
				}
			}()
		}
		writers.Wait()
		if !onB.reaches(last.Load(), 5*time.Second) {
			t.Fatalf("burst %d: b was not woken for position %d within 5s", burst, last.Load())
		}
		if c != nil {
			if !onC.reaches(last.Load(), 5*time.Second) {
				t.Fatalf("burst %d: c was not woken for position %d within 5s", burst, last.Load())
			}
			stopC()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}
	stopChurn()
	if feeds.Load() < 10 {
		t.Errorf("b's feed began %d times, want many", feeds.Load())
	}
}
