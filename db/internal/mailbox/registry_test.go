package mailbox_test

import (
	"slices"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/internal/mailbox"
)

// calls records a handler's calls on a channel.
type calls chan []byte

func (c calls) fn(p []byte) { c <- p }

func (c calls) next(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-c:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no call within 5s")
		return nil
	}
}

func (c calls) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-c:
		t.Fatalf("unexpected call with %q", p)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestRegistryTopics: a payload reaches the subscriptions of its topic
// only, and a cancelled subscription no more; Cancel is idempotent.
func TestRegistryTopics(t *testing.T) {
	var r mailbox.Registry
	a1, a2, b := make(calls, 10), make(calls, 10), make(calls, 10)
	s1 := r.Add("a", a1.fn)
	defer r.Add("a", a2.fn).Cancel()
	defer r.Add("b", b.fn).Cancel()
	if got := r.Topics(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"a", "b"}) {
		t.Errorf("Topics() = %q, want a and b", got)
	}
	r.Push("a", []byte("1"))
	for _, c := range []calls{a1, a2} {
		if p := c.next(t); string(p) != "1" {
			t.Errorf("got %q, want 1", p)
		}
	}
	s1.Cancel()
	s1.Cancel()
	r.Push("a", []byte("2"))
	if p := a2.next(t); string(p) != "2" {
		t.Errorf("got %q, want 2", p)
	}
	a1.none(t)
	b.none(t)
}

// TestRegistryLive: MarkLive calls the subscriptions of the carried topics
// with nil, once until Lost, and closes Live the first time.
func TestRegistryLive(t *testing.T) {
	var r mailbox.Registry
	a, b := make(calls, 10), make(calls, 10)
	sa := r.Add("a", a.fn)
	defer sa.Cancel()
	defer r.Add("b", b.fn).Cancel()
	carried := func(topic string) bool { return topic == "a" }
	r.MarkLive(carried)
	r.MarkLive(carried)
	if p := a.next(t); p != nil {
		t.Errorf("got %q, want nil", p)
	}
	select {
	case <-sa.Live():
	default:
		t.Error("Live not closed after MarkLive")
	}
	a.none(t)
	b.none(t)
	r.Lost()
	r.MarkLive(carried)
	if p := a.next(t); p != nil {
		t.Errorf("after Lost: got %q, want nil", p)
	}
}

// TestRegistryClose: Close stops every subscription, and those added after.
func TestRegistryClose(t *testing.T) {
	var r mailbox.Registry
	before, after := make(calls, 10), make(calls, 10)
	s := r.Add("a", before.fn)
	r.Close()
	r.Add("a", after.fn)
	r.Push("a", []byte("x"))
	r.MarkLive(func(string) bool { return true })
	before.none(t)
	after.none(t)
	s.Cancel()
}

// TestRegistryWaker: a waker is called on the pushing goroutine, before
// Push returns, for every payload of its topic and when it becomes live
// (with 0), and with Wake's number; Wake makes the payload only for
// mailboxes; after Cancel or Close no call.
func TestRegistryWaker(t *testing.T) {
	var r mailbox.Registry
	wakes := 0
	var got []int64
	w := r.AddWaker("a", func(n int64) { wakes++; got = append(got, n) })
	r.MarkLive(func(string) bool { return true })
	if wakes != 1 {
		t.Fatalf("after MarkLive: %d wakes, want 1", wakes)
	}
	select {
	case <-w.Live():
	default:
		t.Error("a waker's Live not closed after MarkLive")
	}
	made := 0
	payload := func() []byte { made++; return []byte("p") }
	r.Wake("a", 7, payload)
	r.Push("a", []byte("q"))
	r.Push("b", []byte("q"))
	if wakes != 3 || made != 0 || !slices.Equal(got, []int64{0, 7, 0}) {
		t.Errorf("%d wakes with %v and %d payloads made, want 3 with [0 7 0] and 0", wakes, got, made)
	}
	mb, mb2 := make(calls, 10), make(calls, 10)
	defer r.Add("a", mb.fn).Cancel()
	defer r.Add("a", mb2.fn).Cancel()
	r.Wake("a", 8, payload)
	for _, c := range []calls{mb, mb2} {
		if p := c.next(t); string(p) != "p" {
			t.Errorf("a mailbox got %q, want p", p)
		}
	}
	if made != 1 || wakes != 4 {
		t.Errorf("with mailboxes: %d payloads made, %d wakes; want 1, 4", made, wakes)
	}
	w.Cancel()
	r.Push("a", nil)
	r.Close()
	r.Push("a", nil)
	if wakes != 4 {
		t.Errorf("%d wakes after Cancel, want 4", wakes)
	}
	r.AddWaker("a", func(int64) { t.Error("a waker added after Close was called") })
	r.Push("a", nil)
	r.MarkLive(func(string) bool { return true })
}
