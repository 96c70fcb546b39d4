package postgres

import (
	"testing"
	"time"
)

// TestUnreachableBacksOff: a holder that cannot be reached is passed over
// for a second, then for twice as long each time in a row that it cannot
// be reached again, up to maxAvoid; the writes that fail together count
// once, and an answer starts over at a second.
func TestUnreachableBacksOff(t *testing.T) {
	q := &Sequencer{url: "http://a", tok: "t", stale: time.Now().Add(time.Hour)}
	passedOver := func() time.Duration {
		t.Helper()
		if _, _, ok := q.Holder(); ok {
			t.Fatal("a holder that could not be reached is forwarded to")
		}
		d := time.Until(q.avoid)
		q.avoid = time.Now().Add(-time.Millisecond) // the time is over
		if _, _, ok := q.Holder(); !ok {
			t.Fatal("the holder is still passed over once the time is over")
		}
		return d
	}
	near := func(got, want time.Duration) bool { return got > want-time.Second/2 && got <= want }

	for i, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
		q.Unreachable("http://a")
		q.Unreachable("http://a") // failed with it: counts once
		q.Unreachable("http://b") // not the holder
		if got := passedOver(); !near(got, want*time.Second) {
			t.Fatalf("time %d in a row: passed over for %v, want %v", i+1, got, want*time.Second)
		}
	}
	q.Reached("http://a")
	q.Unreachable("http://a")
	if got := passedOver(); !near(got, time.Second) {
		t.Fatalf("after an answer: passed over for %v, want 1s", got)
	}
}
