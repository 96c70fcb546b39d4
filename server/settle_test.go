package server

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"
)

const mib = 1 << 20

// TestSettler: the heap is settled after settleStreak quiet ticks in a
// row (each allocating at most settleQuiet), once it holds
// max(settleMin, a quarter) more than its floor, and at least the gap
// after the last settle; settles that keep coming space out.
func TestSettler(t *testing.T) {
	const floor = 64 * mib // what a settle leaves; worth settling: 16 MiB more
	// tick is one tick's allocations and what the heap holds after it.
	type tick struct{ alloc, held uint64 }
	quiet := func(n int, held uint64) []tick {
		ts := make([]tick, n)
		for i := range ts {
			ts[i].held = held
		}
		return ts
	}
	for _, c := range []struct {
		name    string
		ticks   []tick
		settled []int // the ticks that settle, from 0
	}{
		{"a burst, then quiet", slices.Concat([]tick{{100 * mib, 2 * floor}}, quiet(3, 2*floor)), []int{2}},
		{"busy", []tick{{100 * mib, 2 * floor}, {settleQuiet + 1, 2 * floor}, {0, 2 * floor}, {50 * mib, 3 * floor}, {0, 3 * floor}}, nil},
		{"a quiet tick allocates at most settleQuiet", []tick{{settleQuiet, 2 * floor}, {settleQuiet, 2 * floor}}, []int{1}},
		{"grown by less than a quarter", quiet(4, floor+floor/4-1), nil},
		{"grown by a quarter", quiet(2, floor+floor/4), []int{1}},
		{"a heap that shrank on its own is the new floor", slices.Concat(quiet(2, floor/2), quiet(2, floor/2+floor/8-1), quiet(1, floor/2+floor/8)), []int{4}},
		{
			"settles that keep coming space out",
			quiet(60, 2*floor), // a settle leaves floor, and the heap grows back to 2*floor at once
			[]int{1, 1 + settleGapMin, 1 + 3*settleGapMin, 1 + 7*settleGapMin},
		},
		{
			"a settle long after the last brings the gap back down",
			slices.Concat(quiet(17, 2*floor), quiet(40, floor), quiet(11, 2*floor)),
			// at 1, 6 and 16, the gap now 4*settleGapMin; at 57, 41 ticks
			// after the last, more than twice the gap: back to
			// 2*settleGapMin, and the next at 67
			[]int{1, 6, 16, 57, 67},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var allocs uint64 = 1 << 40
			s := newSettler(heapStats{allocs: allocs, held: floor})
			var settled []int
			for i, x := range c.ticks {
				allocs += x.alloc
				if s.tick(heapStats{allocs: allocs, held: x.held}) {
					settled = append(settled, i)
					s.settled(heapStats{allocs: allocs, held: floor})
				}
			}
			if !slices.Equal(settled, c.settled) {
				t.Fatalf("settled at ticks %v, want %v", settled, c.settled)
			}
		})
	}
	t.Run("settleMin for a small heap", func(t *testing.T) {
		s := newSettler(heapStats{held: mib})
		s.tick(heapStats{held: mib})
		if s.tick(heapStats{held: mib + settleMin - 1}) {
			t.Fatal("settled a heap grown by less than settleMin")
		}
		if !s.tick(heapStats{held: mib + settleMin}) {
			t.Fatal("did not settle a heap grown by settleMin")
		}
	})
	t.Run("at most once per settleGapMax", func(t *testing.T) {
		s := newSettler(heapStats{held: mib})
		s.gap = settleGapMax
		s.since = 0
		for i := range 4 * settleGapMax {
			if s.tick(heapStats{held: 64 * mib}) {
				if s.since < settleGapMax {
					t.Fatalf("settled %d ticks after the last, want at least %d", s.since, settleGapMax)
				}
				s.settled(heapStats{held: mib})
				if s.gap != settleGapMax {
					t.Fatalf("tick %d: the gap is %d, want it to stay %d", i, s.gap, settleGapMax)
				}
			}
		}
	})
}

// TestSettleLoop: the loop reads the heap at its start and at each tick,
// settles when its settler says, takes the heap as the settle left it
// for its floor and the settle's time for its gap, and ends with its
// context.
func TestSettleLoop(t *testing.T) {
	const floor = 64 * mib
	reads := make(chan heapStats)
	gcs := make(chan struct{}, 8)
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		settleLoop(ctx, ticks, func() heapStats { return <-reads }, func() { gcs <- struct{}{} }, slog.New(slog.DiscardHandler))
		close(done)
	}()
	// Each step must be taken at once: a loop that waits for something
	// else (a read after a settle it should not have made) fails here.
	step := func(what string, send func() bool) {
		t.Helper()
		if !send() {
			t.Fatalf("the loop did not take %s", what)
		}
	}
	read := func(h heapStats) {
		t.Helper()
		step("a read", func() bool {
			select {
			case reads <- h:
				return true
			case <-time.After(5 * time.Second):
				return false
			}
		})
	}
	tick := func() {
		t.Helper()
		step("a tick", func() bool {
			select {
			case ticks <- time.Time{}:
				return true
			case <-time.After(5 * time.Second):
				return false
			}
		})
	}
	read(heapStats{held: floor}) // the start
	for range settleStreak {
		tick()
		read(heapStats{held: 2 * floor})
	}
	read(heapStats{held: floor / 2}) // read after the settle: the loop settled
	if len(gcs) != 1 {
		t.Fatalf("%d collections, want 1", len(gcs))
	}
	// What the settle left is the floor, and the gap starts from the
	// settle: a heap a quarter over it settles again settleGapMin ticks
	// later, not sooner.
	for i := 1; i <= settleGapMin; i++ {
		tick()
		read(heapStats{held: floor/2 + floor/8})
	}
	read(heapStats{held: floor / 2})
	if len(gcs) != 2 {
		t.Fatalf("%d collections, want 2", len(gcs))
	}
	cancel()
	<-done
}
