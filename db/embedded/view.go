package embedded

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
)

// view is what readers see that the bbolt file does not hold yet: the
// groups published since the last checkpoint. It changes under mu's write
// lock when the syncer publishes groups and when the commit loop
// checkpoints. A reader holds the read lock from before it begins a bbolt
// transaction until it is done, so that a checkpoint (committed to bbolt,
// then dropped from memory under the write lock) is seen once, never
// twice or not at all.
type view struct {
	mu      sync.RWMutex
	head    int64                      // the position of the last change
	recent  []api.Change               // changes since the last checkpoint, in order
	records map[string]api.RecordState // records changed since, as they are now
	streams map[string][]streamOp      // the changes of streams since, in order, by stream id
}

// read runs fn with a read transaction, under the view's read lock.
func (s *Store) read(fn func(tx *bolt.Tx) error) error {
	s.view.mu.RLock()
	defer s.view.mu.RUnlock()
	return s.db.View(fn)
}

// record returns a record as readers see it: changed since the last
// checkpoint, or in the file. A record that does not exist (deleted, its
// tombstone, or never written) is version 0. The caller holds the view's
// read lock.
func (s *Store) record(tx *bolt.Tx, name string) (api.Record, bool) {
	if st, ok := s.view.records[name]; ok {
		if !st.Exists {
			return api.Record{Name: name}, false
		}
		return api.Record{Name: name, Version: st.Version, Data: st.Data}, true
	}
	rec, ok := getRecord(tx, name)
	if !ok {
		return api.Record{Name: name}, false
	}
	return rec, true
}

// Get returns a record, or NOT_FOUND.
func (s *Store) Get(_ context.Context, name string) (api.Record, error) {
	var rec api.Record
	err := s.read(func(tx *bolt.Tx) error {
		var ok bool
		if rec, ok = s.record(tx, name); !ok {
			return api.NotFound(name)
		}
		rec.Data = bytes.Clone(rec.Data)
		return nil
	})
	return rec, err
}

// List returns records under prefix after the cursor, in name order.
func (s *Store) List(_ context.Context, prefix, after string, limit int) ([]api.Record, error) {
	return s.list(prefix, after, limit, false, nil)
}

// list returns records under prefix after the cursor, in name order, with
// their data when withData is set. It reads under one read lock, so the
// page is one position of the log, which it stores in pos when not nil.
func (s *Store) list(prefix, after string, limit int, withData bool, pos *int64) ([]api.Record, error) {
	var out []api.Record
	err := s.read(func(tx *bolt.Tx) error {
		if pos != nil {
			*pos = s.view.head
		}
		// The records changed since the checkpoint, merged into the file's.
		var changed []string
		for name := range s.view.records {
			if strings.HasPrefix(name, prefix) && name > after {
				changed = append(changed, name)
			}
		}
		slices.Sort(changed)
		add := func(name string) {
			if rec, ok := s.record(tx, name); ok {
				if !withData {
					rec.Data = nil
				}
				out = append(out, api.Record{Name: name, Version: rec.Version, Data: rec.Data})
			}
		}
		c := tx.Bucket(bucketRecords).Cursor()
		k, _ := c.Seek([]byte(max(prefix, after)))
		for len(out) < limit {
			var stored, name string // the file's next name under prefix, and the next to list
			if k != nil && bytes.HasPrefix(k, []byte(prefix)) {
				stored = string(k)
			}
			switch {
			case len(changed) > 0 && (stored == "" || changed[0] <= stored):
				name, changed = changed[0], changed[1:]
			case stored != "":
				name = stored
			default:
				return nil
			}
			if name == stored {
				k, _ = c.Next()
			}
			if name > after {
				add(name)
			}
		}
		return nil
	})
	return out, err
}

// Snapshot reads records at one log position.
func (s *Store) Snapshot(_ context.Context, names []string) (int64, []api.Record, error) {
	var pos int64
	out := make([]api.Record, len(names))
	err := s.read(func(tx *bolt.Tx) error {
		pos = s.view.head
		for i, n := range names {
			out[i], _ = s.record(tx, n)
			out[i].Name = n
		}
		return nil
	})
	return pos, out, err
}

// Changes returns up to limit changes after position after: those in the
// bbolt file, then those since the last checkpoint.
func (s *Store) Changes(_ context.Context, after int64, limit int) ([]api.Change, error) {
	s.view.mu.RLock()
	if len(s.view.recent) > 0 && after >= s.view.recent[0].Seq-1 { // a reader near the head: all in memory
		out := s.recentAfter(nil, after, limit)
		s.view.mu.RUnlock()
		return out, nil
	}
	s.view.mu.RUnlock()
	var out []api.Change
	err := s.read(func(tx *bolt.Tx) error {
		if after < getInt(tx.Bucket(bucketMeta), keyTrimmed) {
			return api.ErrTrimmed
		}
		last := after
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			out = append(out, ch)
			last = ch.Seq
		}
		// A checkpoint may have put recent changes in the file already.
		out = s.recentAfter(out, last, limit)
		return nil
	})
	return out, err
}

// recentAfter appends to out the changes since the last checkpoint that
// follow position after, until out holds limit. The caller holds the
// view's read lock.
func (s *Store) recentAfter(out []api.Change, after int64, limit int) []api.Change {
	if len(s.view.recent) == 0 || len(out) >= limit {
		return out
	}
	i := min(max(0, int(after+1-s.view.recent[0].Seq)), len(s.view.recent))
	return append(out, s.view.recent[i:min(len(s.view.recent), i+limit-len(out))]...)
}

// publish shows durable groups to readers. The syncer calls it, holding
// pipe.mu.
func (s *Store) publish(done []*walGroup) {
	s.view.mu.Lock()
	defer s.view.mu.Unlock()
	for _, g := range done {
		for _, r := range g.requests {
			if op := r.Work.stream; op != nil {
				s.view.streams[op.id] = append(s.view.streams[op.id], *op)
				continue
			}
			for _, ch := range r.Changes {
				s.view.recent = append(s.view.recent, ch)
				track(s.view.records, ch)
			}
		}
		s.view.head = g.seq
	}
}

// track records in states what a change did to its record; events change
// no record.
func track(states map[string]api.RecordState, ch api.Change) {
	if ch.Kind != api.KindEvent {
		states[ch.Name] = api.RecordState{Version: ch.Version, Data: ch.Data, Exists: ch.Kind != api.KindDelete}
	}
}
