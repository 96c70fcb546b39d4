// Package commit is what the Stores of every backend share on a write's
// way to the log: a Committer, which queues the callers' requests and
// hands them to the backend in groups from one goroutine, and Records,
// which computes the changes of the batches of writes of a group. A
// backend keeps only its own I/O: reading the records, storing the
// changes, making them durable.
package commit

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// MaxGroup bounds how many waiting requests join one group. The queue
// holds as many.
const MaxGroup = 512

// Request is one caller's atomic unit of work for a Committer, W being
// what the backend does with it, and its answer.
type Request[W any] struct {
	Work W // set by the caller, read by the backend

	// The answer, set by the backend before Answer.
	Changes []api.Change
	Err     error

	done chan struct{}
}

// Answer hands Changes and Err to the caller, who waits for nothing else.
// The backend calls it once per request, from any goroutine.
func (r *Request[W]) Answer() { close(r.done) }

// Fail answers with err and no changes.
func (r *Request[W]) Fail(err error) {
	r.Changes, r.Err = nil, err
	r.Answer()
}

// Config is what a backend does with the groups of a Committer.
type Config[W any] struct {
	// Commit runs a group of requests, in the order they were queued. It
	// answers each one, before it returns or later (once durable, say).
	// The committer reuses the group's slice once Commit returns.
	Commit func(group []*Request[W])
	// Closed is the error of requests made after Close, and of those
	// still queued when the loop stops.
	Closed error
	// Linger is the longest a group waits for more requests to join it
	// (see gather). Zero: a group takes only the requests already waiting.
	Linger time.Duration
	// Timer, when set, returns a channel that fires when the backend has
	// work of its own for the loop (nil when it has none): the loop calls
	// it each time it waits for requests, and OnTimer when it fires.
	Timer   func() <-chan time.Time
	OnTimer func()
	// Stop, when set, runs in the loop at Close, after the last group and
	// before the requests still queued are refused.
	Stop func()
}

// A Committer is a queue of requests and the one goroutine, its loop,
// that takes them in groups: every request waiting when a group starts
// joins it (up to MaxGroup), so that one commit of the backend's serves
// them all. Requests are answered in order of their groups, as the
// backend answers them. It is safe for concurrent use.
type Committer[W any] struct {
	cfg   Config[W]
	queue chan *Request[W]
	quit  chan struct{} // closed by Close: the loop stops
	done  chan struct{} // closed by the loop as it ends

	mu     sync.RWMutex // held to queue a request; Close takes it to stop queueing
	closed bool         // guarded by mu

	last int // owned by the loop: how many requests the last group held
}

// Start starts a Committer's loop, which runs until Close.
func Start[W any](cfg Config[W]) *Committer[W] {
	c := &Committer[W]{cfg: cfg, queue: make(chan *Request[W], MaxGroup),
		quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// Do queues work and waits for its answer. Once queued, the work commits
// or fails as a whole: Do returns ctx's error only if ctx ends first.
func (c *Committer[W]) Do(ctx context.Context, work W) ([]api.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &Request[W]{Work: work, done: make(chan struct{})}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, c.cfg.Closed
	}
	select {
	case c.queue <- r: // the loop runs until Close, which waits for this lock
	case <-ctx.Done():
		c.mu.RUnlock()
		return nil, ctx.Err()
	}
	c.mu.RUnlock()
	<-r.done // every request queued is answered: by the backend, or refused as the loop stops
	return r.Changes, r.Err
}

// Waiting returns how many requests wait for the next group.
func (c *Committer[W]) Waiting() int { return len(c.queue) }

// Close stops the loop after the group under way; the requests still
// queued fail with Config.Closed. It reports whether this call closed
// the Committer: a later call returns false at once.
func (c *Committer[W]) Close() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	<-c.done
	return true
}

// loop takes groups of requests until Close and hands them to the backend.
func (c *Committer[W]) loop() {
	defer close(c.done)
	group := make([]*Request[W], 0, MaxGroup)
	for {
		var timer <-chan time.Time
		if c.cfg.Timer != nil {
			timer = c.cfg.Timer()
		}
		select {
		case <-c.quit:
			if c.cfg.Stop != nil {
				c.cfg.Stop()
			}
			c.refuse(c.cfg.Closed)
			return
		case r := <-c.queue:
			group = c.gather(append(group[:0], r))
		case <-timer:
			c.cfg.OnTimer()
			continue
		}
		c.last = len(group)
		c.cfg.Commit(group)
		clear(group) // keep no answered request from the collector
	}
}

// gather adds the waiting requests to group. Writers answered together
// come back together: when the last group held several, gather waits (at
// most Config.Linger) for as many, so that one commit serves them all. A
// writer alone in the group before never waits.
func (c *Committer[W]) gather(group []*Request[W]) []*Request[W] {
	var timeout <-chan time.Time
	if c.last > 1 && c.cfg.Linger > 0 {
		t := time.NewTimer(c.cfg.Linger)
		defer t.Stop()
		timeout = t.C
	}
	for len(group) < MaxGroup {
		if len(group) >= c.last {
			timeout = nil // enough: take only what is already there
		}
		select {
		case r := <-c.queue:
			group = append(group, r)
			continue
		default:
		}
		if timeout == nil {
			return group
		}
		select {
		case r := <-c.queue:
			group = append(group, r)
		case <-timeout:
			return group
		}
	}
	return group
}

// refuse answers every queued request with err.
func (c *Committer[W]) refuse(err error) {
	for {
		select {
		case r := <-c.queue:
			r.Fail(err)
		default:
			return
		}
	}
}
