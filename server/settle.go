package server

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// settleLoop looks at the heap every settleTick. It settles when the
// last tick allocated at most settleQuiet bytes, the heap holds at least
// settleMin bytes (and a quarter) more than after the last settle, and
// settleGap ticks have passed since it last did.
const (
	settleTick  = time.Second
	settleQuiet = 1 << 20
	settleMin   = 4 << 20
	settleGap   = 5
)

// settle collects garbage twice and returns the free memory to the
// system: the first collection finds what sync.Pools hold still live
// (the buffers of a burst of requests, say), the second
// (debug.FreeOSMemory's) lets it go.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// settleLoop runs gc (settle) when the server is quiet and its heap holds
// much more memory than it did after the last settle (settler), looking
// at the heap every tick.
//
// Go's collector runs once the heap has grown to twice what its last
// collection found live, and the runtime keeps the memory such a heap
// needs. A server that turns quiet after a burst of work (10,000 clients
// that connect at once, say) makes no garbage that would start the next
// collection, so it holds the burst's garbage, and memory for twice the
// burst's peak, until the runtime forces a collection two minutes later;
// even then the runtime keeps memory for twice what is live. Settling
// leaves it what is live: 10,000 idle streams went from about 4.2 to 2.5
// KiB of RSS each (README, Benchmarks). A busy server never settles: it
// collects on its own. The JVM's periodic collection of an idle heap
// does the same (JEP 346). A settle costs two collections, at most once
// per settleGap ticks; a quiet server whose heap grows slowly settles
// each time it has grown by a quarter.
func settleLoop(ctx context.Context, tick <-chan time.Time, gc func(), log *slog.Logger) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	read := func() heapStats {
		metrics.Read(samples)
		return heapStats{
			allocs: samples[0].Value.Uint64(),
			held:   samples[1].Value.Uint64() + samples[2].Value.Uint64() + samples[3].Value.Uint64(),
		}
	}
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
			log.Debug("settled the heap of a quiet server", "took", time.Since(start), "held_before", h.held, "held_after", after.held)
		}
	}
}

// heapStats is what settler looks at: the bytes allocated so far, and
// those the heap holds from the system (its objects, live or not yet
// collected, the unused room in their spans, and free memory not
// returned).
type heapStats struct{ allocs, held uint64 }

// settler tells, tick by tick, when the heap is worth settling.
type settler struct {
	allocs uint64 // allocated so far, at the last tick
	floor  uint64 // held after the last settle, or less since
	since  int    // ticks since the last settle
}

func newSettler(h heapStats) settler {
	return settler{allocs: h.allocs, floor: h.held, since: settleGap}
}

// tick takes the heap's figures now and reports whether to settle.
func (s *settler) tick(h heapStats) bool {
	s.since++
	quiet := h.allocs-s.allocs <= settleQuiet
	s.allocs = h.allocs
	s.floor = min(s.floor, h.held)
	return quiet && s.since >= settleGap && h.held >= s.floor+max(settleMin, s.floor/4)
}

// settled takes the heap's figures after a settle.
func (s *settler) settled(h heapStats) {
	s.allocs, s.floor, s.since = h.allocs, h.held, 0
}
