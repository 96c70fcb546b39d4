package embedded

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// Recovery and checkpoints. Open recovers: it replays the write-ahead log
// of the bbolt file's epoch into the readers' view and checkpoints it.
// The commit loop checkpoints when the log is long enough (due) or Trim
// asks: the view goes into the bbolt file in one transaction, which
// stores the next epoch, and the log starts over in it. A checkpoint that
// fails stalls the store (stall.go).

// recover opens the write-ahead log, replays it into memory and
// checkpoints it.
func (s *Store) recover(walPath string) error {
	var epoch uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		moveSubs := tx.Bucket(bucketStreamSubs) == nil // a new file, or one from before streamsubs
		for _, b := range [][]byte{bucketRecords, bucketLog, bucketStreams, bucketMeta, bucketStreamSubs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if moveSubs {
			if err := moveStreamSubs(tx); err != nil {
				return err
			}
		}
		s.view.head = headOf(tx)
		epoch = uint64(getInt(tx.Bucket(bucketMeta), keyEpoch))
		return nil
	})
	if err != nil {
		return err
	}
	w, found, err := openWAL(walPath, epoch, s.view.head)
	if err != nil {
		return err
	}
	s.wal = w
	s.view.recent, s.view.streams, s.view.records = found.changes, found.streams, map[string]api.RecordState{}
	for id, ops := range found.streams {
		if lastPut(ops) >= 0 {
			s.written.streamsPut[id] = true
		}
	}
	for _, ch := range found.changes {
		track(s.view.records, ch)
		s.view.head = ch.Seq
		s.unsaved.Add(ch.Size())
	}
	s.written.seq = s.view.head
	s.checkpoint() // on failure the store opens stalled, on what it replayed: see stall.go
	return nil
}

// checkpoint writes what changed since the last checkpoint into the bbolt
// file, in one transaction, and starts the write-ahead log over. Only the
// commit loop calls it, once every group written is published (or Open
// and Close, when the loop is not running).
func (s *Store) checkpoint() error {
	if len(s.view.recent) == 0 && len(s.view.streams) == 0 && s.wal.off == 0 && s.written.saved {
		return nil // the log holds nothing of this epoch, not even failed writes
	}
	epoch := s.wal.epoch + 1
	err := s.db.Update(func(tx *bolt.Tx) error { return s.save(tx, epoch) })
	if err != nil {
		err = fmt.Errorf("checkpoint: %w", err)
		s.pipe.mu.Lock()
		s.pipe.stalled, s.pipe.retryAt = err, time.Now().Add(s.opt.retry)
		s.pipe.mu.Unlock()
		return err
	}
	s.view.mu.Lock()
	s.view.recent, s.view.records, s.view.streams = nil, map[string]api.RecordState{}, map[string][]streamOp{}
	s.view.mu.Unlock()
	s.written.records, s.written.streamsPut = map[string]api.RecordState{}, map[string]bool{}
	s.written.since, s.written.saved = 0, true
	s.wal.restart(epoch)
	s.unsaved.Store(0)
	s.pipe.mu.Lock()
	s.pipe.stalled, s.pipe.logged = nil, 0
	s.pipe.mu.Unlock()
	return nil
}

// save writes the readers' view into the bbolt file, in the checkpoint's
// transaction tx, and stores epoch as the log's next.
func (s *Store) save(tx *bolt.Tx, epoch uint64) error {
	if s.opt.fault != nil {
		if err := s.opt.fault(); err != nil {
			return err
		}
	}
	if err := appendLog(tx, s.view.recent); err != nil {
		return err
	}
	records := tx.Bucket(bucketRecords)
	for name, st := range s.view.records {
		var err error
		if st.Exists {
			err = records.Put([]byte(name), append(binary.BigEndian.AppendUint64(nil, uint64(st.Version)), st.Data...))
		} else {
			err = records.Put([]byte(name), tombstone(st.Version))
		}
		if err != nil {
			return err
		}
	}
	for id, ops := range s.view.streams {
		if err := applyStreamOps(tx, id, ops); err != nil {
			return err
		}
	}
	return putInt(tx.Bucket(bucketMeta), keyEpoch, int64(epoch))
}
