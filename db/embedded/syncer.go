package embedded

import (
	"context"
	"slices"

	"github.com/switchboard-dev/switchboard/api"
)

// syncer fsyncs the log whenever groups were written since its last
// fsync began, until Close.
func (s *Store) syncer() {
	defer close(s.syncDone)
	for {
		select {
		case <-s.syncStop:
			return
		case <-s.wrote:
		}
		s.pipe.Lock()
		var last *batch
		if len(s.written) > 0 {
			last = s.written[len(s.written)-1]
		}
		s.pipe.Unlock()
		if last != nil {
			s.durable(last, s.wal.sync())
		}
	}
}

// drain waits until every group written is published or failed.
func (s *Store) drain() {
	s.pipe.Lock()
	defer s.pipe.Unlock()
	for len(s.written) > 0 {
		s.synced.Wait()
	}
}

// durable is called when an fsync that began after b was written
// returns. Without an error, b and every group written before it are on
// disk: they are published, in order, and answered. After an error
// nothing written since the last published group can be trusted, nor can
// the file: every write from now on fails, and a restart recovers what
// the log holds.
func (s *Store) durable(b *batch, err error) {
	s.pipe.Lock()
	defer s.pipe.Unlock()
	defer s.synced.Broadcast()
	if err != nil {
		s.fail(err, s.written)
		return
	}
	n := slices.Index(s.written, b) + 1
	if n == 0 {
		return // failed meanwhile: the store is broken
	}
	done := s.written[:n]
	s.written = s.written[n:]
	s.logged = b.end
	s.publish(done)
	for _, w := range done {
		for _, r := range w.requests {
			r.Answer()
		}
	}
	s.bus.Send(context.Background(), api.TopicChanges, nil)
}

// fail breaks the store with err and answers the groups with it. The
// caller holds pipe.
//
// The groups were written to the log, and a restart would read back those
// that reached the disk if nothing else happened: Close's checkpoint
// starts a new epoch of the log, which leaves them behind, but it cannot
// when the disk is full, nor after a kill. So the log is cut where the
// published groups end, once, as the store breaks. That write goes where
// the log has written already, so it needs no new space on the disk; if
// it fails too, a failed write may come back after the restart.
func (s *Store) fail(err error, groups []*batch) {
	if s.broken == nil {
		s.wal.cut(s.logged) // best effort: see above
	}
	s.broken = err
	for _, b := range groups {
		for _, r := range b.requests {
			r.Fail(err)
		}
	}
	s.written = nil
}
