package server

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The settler's bounds (settler.tick): a tick is quiet when it allocated
// at most settleQuiet bytes; a settle needs settleStreak quiet ticks in a
// row and a heap grown by settleMin bytes at least, and waits between
// settleGapMin and settleGapMax ticks after the last one.
const (
	settleTick   = time.Second
	settleQuiet  = 1 << 20
	settleStreak = 2
	settleMin    = 4 << 20
	settleGapMin = 5
	settleGapMax = 320
)

// settles reports whether the server settles its heap: not when the
// collector is off (GOGC=off), which settling would override.
func settles() bool { return os.Getenv("GOGC") != "off" }

// settle collects garbage twice and returns the free memory to the
// system: the first collection finds what sync.Pools hold still live
// (the buffers of a burst of requests, say), the second
// (debug.FreeOSMemory's) lets it go.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// readHeap reads the heap's figures for a settler.
func readHeap() func() heapStats {
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	return func() heapStats {
		metrics.Read(samples)
		return heapStats{
			allocs: samples[0].Value.Uint64(),
			held:   samples[1].Value.Uint64() + samples[2].Value.Uint64() + samples[3].Value.Uint64(),
		}
	}
}

// settleLoop runs gc (settle) when the server has turned quiet with a heap
// that holds much more memory than after the last settle (settler),
// reading the heap (readHeap) every tick.
//
// Go's collector runs once the heap has grown to twice what its last
// collection found live, and the runtime keeps the memory such a heap
// needs. A server that turns quiet after a burst of work (10,000 clients
// that connect at once, say) makes no garbage that would start the next
// collection, so it holds the burst's garbage, and memory for twice the
// burst's peak, until the runtime forces a collection two minutes later;
// even then the runtime keeps memory for twice what is live. Settling
// leaves it what is live: 10,000 idle streams went from about 4.2 to 2.4
// KiB of RSS each (README, Benchmarks). The JVM's periodic collection of
// an idle heap does the same (JEP 346). A settle costs two collections.
func settleLoop(ctx context.Context, tick <-chan time.Time, read func() heapStats, gc func(), log *slog.Logger) {
	s := newSettler(read())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if h := read(); s.tick(h) {
			start := time.Now()
			gc()
			after := read()
			s.settled(after)
			log.Debug("settled the heap of a quiet server", "took", time.Since(start), "held_before", h.held, "held_after", after.held, "next_gap", s.gap)
		}
	}
}

// heapStats is what a settler looks at: the bytes allocated so far, and
// those the heap holds from the system (its objects, live or not yet
// collected, the unused room in their spans, and free memory not
// returned).
type heapStats struct{ allocs, held uint64 }

// settler tells, tick by tick, when the heap is worth settling: after
// settleStreak quiet ticks, once it holds a quarter (and settleMin) more
// than after the last settle, or than the least it held since, and gap
// ticks after the last settle. settled adapts the gap, so that a server
// whose load comes and goes, or one that allocates a little all the
// time, settles ever less often (down to once per settleGapMax ticks);
// a busy server is never quiet, and collects on its own. Its owner
// (settleLoop) calls it from one goroutine.
type settler struct {
	allocs uint64 // allocated so far, at the last tick
	floor  uint64 // held after the last settle (at first: at the start), or less since
	quiet  int    // quiet ticks in a row
	since  int    // ticks since the last settle
	gap    int    // ticks the next settle waits for after the last
}

func newSettler(h heapStats) settler {
	return settler{allocs: h.allocs, floor: h.held, since: settleGapMax, gap: settleGapMin}
}

// tick takes the heap's figures now and reports whether to settle.
func (s *settler) tick(h heapStats) bool {
	s.since++
	s.quiet++
	if h.allocs-s.allocs > settleQuiet {
		s.quiet = 0
	}
	s.allocs = h.allocs
	s.floor = min(s.floor, h.held)
	return s.quiet >= settleStreak && s.since >= s.gap && h.held >= s.floor+max(settleMin, s.floor/4)
}

// settled takes the heap's figures after a settle. A settle that came
// before twice the gap doubles it; a later one halves it.
func (s *settler) settled(h heapStats) {
	if s.since < 2*s.gap {
		s.gap = min(2*s.gap, settleGapMax)
	} else {
		s.gap = max(s.gap/2, settleGapMin)
	}
	s.allocs, s.floor, s.since, s.quiet = h.allocs, h.held, 0, 0
}
