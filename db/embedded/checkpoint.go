package embedded

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

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
		s.head = headOf(tx)
		epoch = uint64(getInt(tx.Bucket(bucketMeta), keyEpoch))
		return nil
	})
	if err != nil {
		return err
	}
	w, found, err := openWAL(walPath, epoch, s.head)
	if err != nil {
		return err
	}
	s.wal = w
	s.recent, s.streams, s.records = found.changes, found.streams, map[string]api.RecordState{}
	for id, ops := range found.streams {
		if lastPut(ops) >= 0 {
			s.streamsPut[id] = true
		}
	}
	for _, ch := range found.changes {
		track(s.records, ch)
		s.head = ch.Seq
	}
	s.seq = s.head
	s.checkpoint() // on failure the store opens stalled, on what it replayed: see stall.go
	return nil
}

// checkpoint writes what changed since the last checkpoint into the bbolt
// file, in one transaction, and starts the write-ahead log over. Only the
// commit loop calls it, once every group written is published (or Open
// and Close, when the loop is not running).
func (s *Store) checkpoint() error {
	if len(s.recent) == 0 && len(s.streams) == 0 && s.wal.off == 0 && s.saved {
		return nil // the log holds nothing of this epoch, not even failed writes
	}
	epoch := s.wal.epoch + 1
	err := s.db.Update(func(tx *bolt.Tx) error {
		if s.opt.fault != nil {
			if err := s.opt.fault(); err != nil {
				return err
			}
		}
		if err := appendLog(tx, s.recent); err != nil {
			return err
		}
		records := tx.Bucket(bucketRecords)
		for name, st := range s.records {
			var err error
			if st.Exists {
				err = records.Put([]byte(name), append(binary.BigEndian.AppendUint64(nil, uint64(st.Version)), st.Data...))
			} else {
				err = records.Delete([]byte(name))
			}
			if err != nil {
				return err
			}
		}
		for id, ops := range s.streams {
			if err := applyStreamOps(tx, id, ops); err != nil {
				return err
			}
		}
		return putInt(tx.Bucket(bucketMeta), keyEpoch, int64(epoch))
	})
	if err != nil {
		err = fmt.Errorf("checkpoint: %w", err)
		s.pipe.Lock()
		s.stalled, s.retryAt = err, time.Now().Add(s.opt.retry)
		s.pipe.Unlock()
		return err
	}
	s.view.Lock()
	s.recent, s.records, s.streams = nil, map[string]api.RecordState{}, map[string][]streamOp{}
	s.view.Unlock()
	s.latest, s.streamsPut, s.since, s.saved = map[string]api.RecordState{}, map[string]bool{}, 0, true
	s.wal.restart(epoch)
	s.pipe.Lock()
	s.stalled, s.logged = nil, 0
	s.pipe.Unlock()
	return nil
}
