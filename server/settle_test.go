package server

import (
	"slices"
	"testing"
)

// TestSettler: the heap is settled at a tick that allocated at most
// settleQuiet, once it holds max(settleMin, a quarter) more than after
// the last settle, at most once per settleGap ticks.
func TestSettler(t *testing.T) {
	const (
		mib   = 1 << 20
		floor = 64 * mib // what a settle leaves; worth settling: 16 MiB more
	)
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
		{"a burst, then quiet", slices.Concat([]tick{{100 * mib, 2 * floor}}, quiet(2, 2*floor)), []int{1}},
		{"busy", []tick{{100 * mib, 2 * floor}, {settleQuiet + 1, 2 * floor}, {50 * mib, 3 * floor}}, nil},
		{"a quiet tick allocates at most settleQuiet", []tick{{settleQuiet, 2 * floor}}, []int{0}},
		{"grown by less than a quarter", quiet(3, floor+floor/4-1), nil},
		{"grown by a quarter", quiet(1, floor+floor/4), []int{0}},
		{"at most once per gap", slices.Concat(quiet(1, 2*floor), []tick{{20 * mib, 3 * floor}}, quiet(settleGap+1, 3*floor)), []int{0, settleGap}},
		{"a heap that shrank on its own is the new floor", slices.Concat(quiet(1, floor/2), quiet(1, floor/2+floor/8-1), quiet(1, floor/2+floor/8)), []int{2}},
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
	// A small heap must grow by settleMin, not by a quarter.
	s := newSettler(heapStats{held: mib})
	if s.tick(heapStats{held: mib + settleMin - 1}) {
		t.Fatal("settled a heap grown by less than settleMin")
	}
	if !s.tick(heapStats{held: mib + settleMin}) {
		t.Fatal("did not settle a heap grown by settleMin")
	}
	// A settle that left what it found does not settle again.
	s.settled(heapStats{held: mib + settleMin})
	for i := range 2 * settleGap {
		if s.tick(heapStats{held: mib + settleMin}) {
			t.Fatalf("settled again at tick %d a heap that held what the last settle left", i)
		}
	}
}
