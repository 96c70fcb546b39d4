package embedded

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// pipeline is what lies between the commit loop and the readers. The loop
// writes groups to the log and never waits for the disk; the syncer
// fsyncs what was written. An fsync that returns makes every group
// written before it began durable, and the syncer publishes them to the
// readers' view, in order.
//
// mu guards the fields below it: the loop appends to pending, the syncer
// takes from it, either may break the store (fail), checkpoints stall and
// unstall it, and every write reads why it must fail (refusal). synced is
// a condition on mu.
type pipeline struct {
	wrote   chan struct{} // the loop tells the syncer that groups were written
	stop    chan struct{} // closed by Close: the syncer ends
	stopped chan struct{} // closed by the syncer as it ends

	mu      sync.Mutex
	synced  *sync.Cond  // on mu: groups were published or failed
	pending []*walGroup // groups written, not yet published, in order
	logged  int64       // where the published groups end in the log: see fail
	early   int         // events of pending groups answered once written (AckEventsWritten), at most maxEarly
	broken  error       // the log failed: writes fail until a restart
	stalled error       // the last checkpoint failed: writes fail until one succeeds (see stall.go)
	retryAt time.Time   // when a stalled store tries its checkpoint again
}

// syncer fsyncs the log whenever groups were written since its last
// fsync began, until Close.
func (s *Store) syncer() {
	defer close(s.pipe.stopped)
	for {
		select {
		case <-s.pipe.stop:
			return
		case <-s.pipe.wrote:
		}
		s.pipe.mu.Lock()
		var last *walGroup
		if len(s.pipe.pending) > 0 {
			last = s.pipe.pending[len(s.pipe.pending)-1]
		}
		s.pipe.mu.Unlock()
		if last != nil {
			s.durable(last, s.wal.sync())
		}
	}
}

// waitSynced waits until every group written is published or failed.
func (s *Store) waitSynced() {
	s.pipe.mu.Lock()
	defer s.pipe.mu.Unlock()
	for len(s.pipe.pending) > 0 {
		s.pipe.synced.Wait()
	}
}

// durable is called when an fsync that began after g was written
// returns. Without an error, g and every group written before it are on
// disk: they are published, in order, and answered. After an error
// nothing written since the last published group can be trusted, nor can
// the file: every write from now on fails, and a restart recovers what
// the log holds.
func (s *Store) durable(g *walGroup, err error) {
	s.pipe.mu.Lock()
	defer s.pipe.mu.Unlock()
	defer s.pipe.synced.Broadcast()
	if err != nil {
		s.fail(err, s.pipe.pending)
		return
	}
	n := slices.Index(s.pipe.pending, g) + 1
	if n == 0 {
		return // failed meanwhile: the store is broken
	}
	done := s.pipe.pending[:n]
	s.pipe.pending = s.pipe.pending[n:]
	s.pipe.logged = g.end
	s.publish(done)
	for _, g := range done {
		s.pipe.early -= g.early
		g.answer(nil)
	}
	s.bus.Send(context.Background(), api.TopicChanges, nil)
}

// fail breaks the store with err and answers the groups with it. The
// caller holds pipe.mu.
//
// The groups were written to the log, and a restart would read back those
// that reached the disk if nothing else happened: Close's checkpoint
// starts a new epoch of the log, which leaves them behind, but it cannot
// when the disk is full, nor after a kill. So the log is cut where the
// published groups end, once, as the store breaks. That write goes where
// the log has written already, so it needs no new space on the disk; if
// it fails too, a failed write may come back after the restart.
func (s *Store) fail(err error, groups []*walGroup) {
	if s.pipe.broken == nil {
		s.wal.cut(s.pipe.logged) // best effort: see above
	}
	s.pipe.broken = err
	for _, g := range groups {
		g.answer(err) // not those answered once written: a crash can lose them (AckEventsWritten)
	}
	s.pipe.pending, s.pipe.early = nil, 0
}
