package embedded

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

// The commit loop is the loop of s.committer: it runs commitGroup for each
// group of requests, one group at a time. It prepares a group on the
// state the groups before it left (written), encodes it into the log and
// appends it, and hands it to the syncer without waiting for the disk.

// work is one caller's atomic unit of work for the commit loop: a batch
// of writes, a change of a stream, or (for Trim) a checkpoint and maybe
// streams to remove after it.
type work struct {
	writes     []api.Write
	stream     *streamOp
	checkpoint bool
	drop       *streamDrop
}

// request is one caller's work and its answer.
type request = commit.Request[work]

// written is what the groups written to the log since the last checkpoint
// did: the state that the commit loop prepares each group on, ahead of the
// readers' view by the groups not yet durable. The commit loop owns it
// (Open and Close too, while the loop is not running): no lock.
type written struct {
	seq        int64                      // the position of the last change written
	records    map[string]api.RecordState // records changed since the last checkpoint, as written
	streamsPut map[string]bool            // streams put since the last checkpoint, as written
	since      int                        // changes and stream ops written since the last checkpoint
	saved      bool                       // the epoch being written is stored in the bbolt file
}

// walGroup is a group of requests written to the write-ahead log, waiting
// for an fsync: those of a committer's group that did not fail at once.
type walGroup struct {
	requests []*request
	acked    []bool // by request: answered once written (AckEventsWritten); nil: none was
	early    int    // the changes of the requests answered once written
	seq      int64  // the position of its last change
	end      int64  // where it ends in the write-ahead log
}

// Write applies the writes atomically, in order.
func (s *Store) Write(ctx context.Context, writes []api.Write) ([]api.Change, error) {
	return s.committer.Do(ctx, work{writes: writes})
}

// commitGroup appends a group of requests to the log for the syncer, and
// checkpoints when asked or when the log is long enough. Only the
// committer's loop calls it.
func (s *Store) commitGroup(group []*request) {
	s.appendGroup(group)
	var asked []*request
	for _, r := range group {
		if r.Work.checkpoint {
			asked = append(asked, r)
		}
	}
	if len(asked) > 0 || s.due() {
		s.waitSynced()
		err := s.checkpoint() // on failure the store stalls: see stall.go
		for _, r := range asked {
			r.Err = err
			if err == nil && r.Work.drop != nil {
				r.Err = s.dropStreams(*r.Work.drop) // here, so that no stream op comes in between
			}
			r.Answer()
		}
	}
}

// linger is the longest a group waits for more writers to join (see
// commit.Config). Measured with 8 closed-loop HTTP publishers: 0.25-1 ms
// do about the same, no linger makes groups of one that cost more than
// they save, 2 ms waits longer than an fsync.
const linger = 500 * time.Microsecond

// appendGroup appends a group's changes to the log and wakes the syncer,
// whose next fsync publishes them (see durable). A request that fails
// leaves no trace and is answered at once.
func (s *Store) appendGroup(group []*request) {
	g := s.prepare(group)
	if len(g.requests) == 0 {
		return
	}
	var size int64 // of its changes, read before the syncer may fail them
	for _, r := range g.requests {
		for _, ch := range r.Changes {
			size += ch.Size()
		}
	}
	err := s.wal.write()
	g.end = s.wal.off
	s.pipe.mu.Lock()
	if err == nil {
		err = s.pipe.broken // an fsync failed while g was prepared on what it lost
	}
	if err != nil {
		s.fail(err, append(s.pipe.pending, g))
		s.pipe.mu.Unlock()
		return
	}
	early := s.ackWritten.Load() && g.ackEvents(maxEarly-s.pipe.early)
	s.pipe.early += g.early
	s.pipe.pending = append(s.pipe.pending, g)
	s.pipe.mu.Unlock()
	s.written.seq = g.seq
	s.unsaved.Add(size)
	select {
	case s.pipe.wrote <- struct{}{}:
	default: // the syncer has a wake-up pending already
	}
	if early {
		for i, r := range g.requests {
			if g.acked[i] {
				r.Answer()
			}
		}
	}
}

// maxEarly bounds the events answered once written that are not yet
// durable: past it, a publish waits for its fsync as in the default mode,
// so that a disk that stalls holds the publishers back rather than the
// losses of a power cut growing with the stall.
const maxEarly = commit.MaxGroup

// ackEvents marks the group's requests that publish events and nothing
// else as acknowledged once written, while their events number at most
// room in all, and reports whether it marked any. It runs before the
// group is handed to the syncer, which then publishes them with the
// others but never answers them (see durable and fail).
func (g *walGroup) ackEvents(room int) bool {
	for i, r := range g.requests {
		if !eventsOnly(r.Work) || len(r.Changes) > room-g.early {
			continue
		}
		if g.acked == nil {
			g.acked = make([]bool, len(g.requests))
		}
		g.acked[i] = true
		g.early += len(r.Changes)
	}
	return g.early > 0
}

// eventsOnly reports whether w is a batch of events and nothing else.
func eventsOnly(w work) bool {
	if w.stream != nil || w.checkpoint || len(w.writes) == 0 {
		return false
	}
	for _, x := range w.writes {
		if x.Kind != api.KindEvent {
			return false
		}
	}
	return true
}

// answer answers the group's requests that were not answered once
// written, with err when it is not nil.
func (g *walGroup) answer(err error) {
	for i, r := range g.requests {
		switch {
		case g.acked != nil && g.acked[i]:
		case err != nil:
			r.Fail(err)
		default:
			r.Answer()
		}
	}
}

// prepare computes the group's changes on the state the groups written so
// far left (s.written), encodes them into the log's group under way, and
// returns the requests that succeeded as a walGroup.
func (s *Store) prepare(group []*request) *walGroup {
	refused := s.refusal()
	var tx *bolt.Tx // begun at the first read of what did not change since the last checkpoint
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	file := func() (*bolt.Tx, error) {
		var err error
		if tx == nil {
			tx, err = s.db.Begin(false)
		}
		return tx, err
	}
	recs := commit.Records{Written: s.written.records, Read: func(name string) (api.RecordState, error) {
		tx, err := file()
		if err != nil {
			return api.RecordState{}, err
		}
		rec, ok := getRecord(tx, name)
		return api.RecordState{Version: rec.Version, Data: rec.Data, Exists: ok}, nil
	}}

	g := &walGroup{seq: s.written.seq}
	now := time.Now()
	for _, r := range group {
		switch {
		case r.Work.checkpoint:
			continue // answered by commitGroup
		case refused != nil:
			r.Err = refused
		case r.Work.stream != nil:
			r.Err = s.prepareStream(*r.Work.stream, g.seq, file)
		default:
			r.Changes, r.Err = recs.Prepare(r.Work.writes) // s.written.records moves on, on success
			for i := range r.Changes {
				g.seq++
				r.Changes[i].Seq, r.Changes[i].Time = g.seq, now
				s.wal.addChange(r.Changes[i], i == len(r.Changes)-1)
			}
			s.written.since += len(r.Changes)
		}
		if r.Err != nil {
			r.Answer()
			continue
		}
		g.requests = append(g.requests, r)
	}
	return g
}
