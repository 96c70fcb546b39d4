package realtime

import (
	"sync"
	"sync/atomic"

	"github.com/switchboard-dev/switchboard/api"
)

// delivery is one change handed to a stream's queue, with its frame for
// whole-record and event subscribers, encoded once and shared.
type delivery struct {
	change *api.Change
	frame  []byte
	size   int // what it costs a queue: len(frame), unless too large to be written
	// side is the subscription of a side frame (change is nil then): see Watch.Push.
	side *sub
	// shared is what the permission checks of every stream share (streamperm.go).
	shared atomic.Pointer[deliveryPerm]
}

// maxSpare bounds the array a queue keeps for reuse, in deliveries: the
// array of a burst is let go rather than kept by an idle stream.
const maxSpare = 1024

// queue is a stream's delivery queue, bounded in bytes: the hub pushes
// each change the stream subscribes to, and whoever serves the stream
// takes everything queued at once. A push never blocks and never takes
// the queue past its limit: it is refused, and the stream is cut
// (ErrSlow), because a client that falls that far behind resumes sooner
// than it catches up.
//
// Two arrays take turns: the one being filled and the one the last batch
// was taken in, handed back by recycle once written. A stream that keeps
// up allocates nothing for its queue.
//
// A consumer that is not always at hand (the writer pool) is called when
// there is work, once: the queue remembers whether it was called (held),
// under the same lock as the items, so that a push costs one lock. A
// consumer that waits on its own (Run) never releases the queue, and is
// woken its own way.
//
// A queue is safe for concurrent use; the zero value with a limit set is
// ready. Its lock is taken alone, never around another.
type queue struct {
	limit int // bytes; set before the stream is registered, then read-only

	mu    sync.Mutex
	items []*delivery // waiting, oldest first
	bytes int         // the sum of their sizes, at most limit
	spare []*delivery // empty, with the array of a batch handed back, or nil
	held  bool        // the consumer is called or at work: see claim and release
}

// push queues d and reports whether it did: it leaves the queue as it was
// when d would take it past its limit. wake reports that the queue was
// released: the caller must call the consumer, which now holds it.
func (q *queue) push(d *delivery) (ok, wake bool) {
	q.mu.Lock()
	if q.bytes+d.size > q.limit {
		q.mu.Unlock()
		return false, false
	}
	q.items = append(q.items, d)
	q.bytes += d.size
	wake = !q.held
	q.held = true
	q.mu.Unlock()
	return true, wake
}

// claim holds the queue for its consumer, for work other than deliveries,
// and reports whether the caller must call the consumer: false when it
// is called or at work already.
func (q *queue) claim() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.held {
		return false
	}
	q.held = true
	return true
}

// release lets the queue go, when its consumer has nothing left to do,
// and reports whether it did: false when deliveries wait, which the
// consumer must take first, still holding the queue. Work of other kinds
// that came meanwhile is the consumer's to look for after a release.
func (q *queue) release() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 {
		return false
	}
	q.held = false
	return true
}

// take empties the queue and returns what it held, oldest first. The
// caller owns the batch until it hands it back to recycle.
func (q *queue) take() []*delivery {
	q.mu.Lock()
	batch := q.items
	q.items, q.spare = q.spare, nil
	q.bytes = 0
	q.mu.Unlock()
	return batch
}

// recycle hands back a batch from take once its deliveries are written:
// its array is filled next, unless it is past maxSpare or the queue has
// an array to fill already. The caller must not use batch after.
func (q *queue) recycle(batch []*delivery) {
	clear(batch) // the frames are written: let them go
	if cap(batch) == 0 || cap(batch) > maxSpare {
		return
	}
	q.mu.Lock()
	if q.spare == nil {
		q.spare = batch[:0]
	}
	q.mu.Unlock()
}

// queued reports how many deliveries wait and the bytes they count.
func (q *queue) queued() (n, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.bytes
}
