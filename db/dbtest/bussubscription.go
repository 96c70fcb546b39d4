package dbtest

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// After cancel, a payload sent (from this instance or another) no longer
// reaches the handler, while the other subscriptions of the topic keep
// theirs; cancel may be called again.
func testBusCancel(t *testing.T, f BusFixture) {
	kept, gone := listen(t, f.Bus, "cancel"), newInbox()
	cancel := f.Bus.Subscribe("cancel", gone.fn)
	sendAll(t, f.Bus, "cancel", "1")
	kept.want(t, "1")
	gone.want(t, "1")
	cancel()
	cancel()
	sendAll(t, f.Bus, "cancel", "2")
	kept.want(t, "1", "2")
	sendAll(t, f.other(), "cancel", "3")
	kept.want(t, "1", "2", "3")
	gone.wantNoMore(t, "1")
}

// cancel returns without waiting for a call under way, which runs to its
// end; the payloads queued behind it are dropped.
func testBusCancelDropsQueued(t *testing.T, f BusFixture) {
	in, release := newInbox(), make(chan struct{})
	cancel := f.Bus.Subscribe("queued", func(p []byte) {
		in.fn(p)
		if string(p) == "a" {
			<-release
		}
	})
	defer close(release)
	witness := listen(t, f.Bus, "queued")
	sendAll(t, f.Bus, "queued", "a", "b", "c", "fence")
	// Once "fence" reached the witness, "b" and "c" were handed to every
	// subscription of the topic: they wait behind "a".
	witness.want(t, "a", "b", "c", "fence")
	in.want(t, "a")
	returned := make(chan struct{})
	go func() {
		cancel()
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(busWait):
		t.Fatal("cancel waits for the call under way")
	}
	release <- struct{}{}
	in.wantNoMore(t, "a")
}

// A handler may cancel its own subscription: no call follows.
func testBusCancelInHandler(t *testing.T, f BusFixture) {
	in, set := newInbox(), make(chan struct{})
	var cancel func()
	cancel = f.Bus.Subscribe("self", func(p []byte) {
		in.fn(p)
		if p != nil {
			<-set
			cancel()
		}
	})
	close(set)
	witness := listen(t, f.Bus, "self")
	sendAll(t, f.Bus, "self", "1", "2", "3")
	witness.want(t, "1", "2", "3")
	in.wantNoMore(t, "1")
	cancel()
}

// After a lost connection every handler is called with nil (payloads may
// have been missed), Ready fails until the connection is back, and then
// payloads flow again between every instance. A Bus without a connection
// to lose calls a handler with nil only for a nil sent.
func testBusNilAfterReconnect(t *testing.T, f BusFixture) {
	var subs []*inbox
	for _, b := range f.instances() {
		subs = append(subs, listen(t, b, "reconnect"))
	}
	sendAll(t, f.Bus, "reconnect", "before")
	for _, in := range subs {
		in.want(t, "before")
	}
	if f.Disconnect == nil {
		sendAll(t, f.Bus, "reconnect", "1", "2")
		for _, in := range subs {
			in.want(t, "before", "1", "2")
		}
		return
	}
	f.Disconnect(t)
	waitReady(t, f.Bus, false)
	for _, b := range f.instances() {
		waitReady(t, b, true)
	}
	for i, in := range subs {
		in.wait(t, "a nil after the reconnect", func(calls [][]byte) bool {
			return len(calls) > 1 && calls[len(calls)-1] == nil
		})
		if calls := in.got(); len(calls) != 2 || string(calls[0]) != "before" {
			t.Errorf("instance %d got %s, want \"before\" and nil", i, show(calls))
		}
	}
	wantResumed(t, f, subs)
}

// wantResumed sends a payload from every instance and checks that each of
// subs, which got "before" and nil, gets them all.
func wantResumed(t *testing.T, f BusFixture, subs []*inbox) {
	t.Helper()
	var after []string
	for i, b := range f.instances() {
		p := "after-" + strconv.Itoa(i)
		sendAll(t, b, "reconnect", p)
		after = append(after, p)
	}
	for i, in := range subs {
		calls := in.waitCalls(t, 2+len(after))
		var got []string
		for _, p := range calls[2:] {
			got = append(got, string(p))
		}
		slices.Sort(got)
		if !slices.Equal(got, after) {
			t.Errorf("instance %d got %s, want \"before\", nil and %q in any order", i, show(calls), after)
		}
	}
}
