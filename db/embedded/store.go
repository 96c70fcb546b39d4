// Package embedded is the single-process store: records, the change log
// and stream state in one bbolt file, with a write-ahead log beside it.
// Writes are group committed: the commit loop appends every group of
// waiting writes to the write-ahead log at once, and a syncer fsyncs the
// log again as soon as its last fsync returns, for every group written in
// the meantime. A group is answered and shown to readers once on disk, in
// order. The bbolt file catches up at checkpoints, many groups in one
// transaction; until then readers see the groups since the last
// checkpoint in memory.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

var _ api.Store = (*Store)(nil)

var (
	bucketRecords = []byte("records")
	bucketLog     = []byte("log")
	bucketStreams = []byte("streams")
	bucketMeta    = []byte("meta")
	keyTrimmed    = []byte("trimmed")
	keyEpoch      = []byte("epoch")
	keyLogBytes   = []byte("logbytes")
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("embedded store is closed")

// Store is the embedded api.Store. It is safe for concurrent use; only one
// process may open a directory at a time.
type Store struct {
	db        *bolt.DB
	wal       *wal // written by the commit loop, synced by the syncer
	bus       *Bus
	committer *commit.Committer[work] // the write queue; its loop is the commit loop (commitGroup)
	opt       options
	saved     bool // the epoch being written is stored in the bbolt file

	// Owned by the commit loop: what the groups written so far did.
	seq        int64                      // the position of the last change written
	latest     map[string]api.RecordState // records changed since the last checkpoint, as written
	streamsPut map[string]bool            // streams put since the last checkpoint, as written
	since      int                        // changes and stream ops written since the last checkpoint

	// The pipeline: the loop writes groups to the log and never waits for
	// the disk; the syncer fsyncs what was written. An fsync that returns
	// makes every group written before it began durable.
	wrote    chan struct{} // tells the syncer that groups were written
	syncStop chan struct{} // closed by Close: the syncer ends
	syncDone chan struct{} // closed by the syncer as it ends
	pipe     sync.Mutex    // guards written and broken
	synced   *sync.Cond    // on pipe: groups were published or failed
	written  []*batch      // groups written, not yet published, in order
	broken   error         // the log failed: writes fail until a restart
	logged   int64         // where the published groups end in the log: see fail
	stalled  error         // the last checkpoint failed: writes fail until one succeeds (see stall.go)
	retryAt  time.Time     // when a stalled store tries its checkpoint again

	// view guards what the bbolt file does not hold yet: the state since
	// the last checkpoint. It changes under the write lock when groups are
	// published and at checkpoints. A reader holds the read lock from
	// before it begins a bbolt transaction until it is done, so that a
	// checkpoint (committed to bbolt, then dropped from memory under the
	// write lock) is seen once, never twice or not at all.
	view    sync.RWMutex
	head    int64                      // the position of the last change
	recent  []api.Change               // changes since the last checkpoint, in order
	records map[string]api.RecordState // records changed since, as they are now
	streams map[string][]streamOp      // the changes of streams since, in order, by stream id
}

// batch is a group of requests written to the log, waiting for an fsync.
type batch struct {
	requests []*request
	seq      int64 // the position of its last change
	end      int64 // where it ends in the write-ahead log
}

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

// options are what tests change in a store; Open takes the defaults.
type options struct {
	every int           // checkpoint after this many changes
	retry time.Duration // how soon a checkpoint that failed is tried again
	fault func() error  // tests: an error for checkpoints to fail with, as a full disk would
}

// Open opens (or creates) the store in dir: the files switchboard.db and
// switchboard.wal. Changes that reached the write-ahead log before a crash
// are applied to the bbolt file first.
func Open(dir string) (*Store, error) {
	return open(dir, options{every: checkpointChanges, retry: checkpointRetry})
}

func open(dir string, opt options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, dataDirError(dir, err)
	}
	file := filepath.Join(dir, "switchboard.db")
	db, err := bolt.Open(file, 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // address space only: no remapping (which waits for readers) as the file grows
	})
	if err != nil {
		return nil, dataDirError(dir, err)
	}
	s := &Store{db: db, bus: NewBus(), opt: opt,
		wrote: make(chan struct{}, 1), syncStop: make(chan struct{}), syncDone: make(chan struct{}),
		latest: map[string]api.RecordState{}, streamsPut: map[string]bool{}}
	s.synced = sync.NewCond(&s.pipe)
	if err := s.recover(filepath.Join(dir, "switchboard.wal")); err != nil {
		db.Close()
		return nil, dataDirError(dir, err)
	}
	go s.syncer()
	s.committer = commit.Start(commit.Config[work]{
		Commit:  s.commitGroup,
		Closed:  ErrClosed,
		Linger:  linger,
		Timer:   s.retry,
		OnTimer: func() { s.checkpoint() }, // on failure it is tried again later
		Stop:    s.drain,
	})
	return s, nil
}

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

// Bus returns the in-process Bus on which the store announces changes.
func (s *Store) Bus() *Bus { return s.bus }

// Close stops the commit loop after the group under way (its Stop waits
// for the syncer to publish every group written), then the syncer,
// checkpoints and closes the files.
func (s *Store) Close() error {
	if !s.committer.Close() {
		return nil
	}
	close(s.syncStop)
	<-s.syncDone
	return errors.Join(s.checkpoint(), s.wal.close(), s.db.Close())
}

// Ping reports whether the files are usable.
func (s *Store) Ping(context.Context) error {
	if err := s.refusal(); err != nil {
		return err
	}
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// read runs fn with a read transaction, under the view's read lock.
func (s *Store) read(fn func(tx *bolt.Tx) error) error {
	s.view.RLock()
	defer s.view.RUnlock()
	return s.db.View(fn)
}

// record returns a record as readers see it: changed since the last
// checkpoint, or in the file. The caller holds the view's read lock.
func (s *Store) record(tx *bolt.Tx, name string) (api.Record, bool) {
	if st, ok := s.records[name]; ok {
		if !st.Exists {
			return api.Record{Name: name}, false
		}
		return api.Record{Name: name, Version: st.Version, Data: st.Data}, true
	}
	return getRecord(tx, name)
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
	var out []api.Record
	err := s.read(func(tx *bolt.Tx) error {
		// The records changed since the checkpoint, merged into the file's.
		var changed []string
		for name := range s.records {
			if strings.HasPrefix(name, prefix) && name > after {
				changed = append(changed, name)
			}
		}
		slices.Sort(changed)
		add := func(name string) {
			if rec, ok := s.record(tx, name); ok {
				out = append(out, api.Record{Name: name, Version: rec.Version})
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
		pos = s.head
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
	s.view.RLock()
	if len(s.recent) > 0 && after >= s.recent[0].Seq-1 { // a reader near the head: all in memory
		out := s.recentAfter(nil, after, limit)
		s.view.RUnlock()
		return out, nil
	}
	s.view.RUnlock()
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
	if len(s.recent) == 0 || len(out) >= limit {
		return out
	}
	i := min(max(0, int(after+1-s.recent[0].Seq)), len(s.recent))
	return append(out, s.recent[i:min(len(s.recent), i+limit-len(out))]...)
}

// Write applies the writes atomically, in order.
func (s *Store) Write(ctx context.Context, writes []api.Write) ([]api.Change, error) {
	return s.committer.Do(ctx, work{writes: writes})
}

// commitGroup appends a group of requests to the log for the syncer, and
// checkpoints when asked or when the log is long enough. Only the
// committer's loop calls it.
func (s *Store) commitGroup(group []*request) {
	s.write(group)
	var asked []*request
	for _, r := range group {
		if r.Work.checkpoint {
			asked = append(asked, r)
		}
	}
	if len(asked) > 0 || s.due() {
		s.drain()
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

// write appends a group's changes to the log and wakes the syncer, whose
// next fsync publishes them (see durable). A request that fails leaves no
// trace and is answered at once.
func (s *Store) write(group []*request) {
	b := s.prepare(group)
	if len(b.requests) == 0 {
		return
	}
	err := s.wal.write()
	b.end = s.wal.off
	s.pipe.Lock()
	if err == nil {
		err = s.broken // an fsync failed while b was prepared on what it lost
	}
	if err != nil {
		s.fail(err, append(s.written, b))
		s.pipe.Unlock()
		return
	}
	s.written = append(s.written, b)
	s.pipe.Unlock()
	s.seq = b.seq
	select {
	case s.wrote <- struct{}{}:
	default: // the syncer has a wake-up pending already
	}
}

// prepare computes the group's changes on the state the groups written so
// far left, encodes them into the log's group under way, and returns the
// requests that succeeded as a batch.
func (s *Store) prepare(group []*request) *batch {
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
	recs := commit.Records{Written: s.latest, Read: func(name string) (api.RecordState, error) {
		tx, err := file()
		if err != nil {
			return api.RecordState{}, err
		}
		rec, ok := getRecord(tx, name)
		return api.RecordState{Version: rec.Version, Data: rec.Data, Exists: ok}, nil
	}}

	b := &batch{seq: s.seq}
	now := time.Now()
	for _, r := range group {
		switch {
		case r.Work.checkpoint:
			continue // answered by commitGroup
		case refused != nil:
			r.Err = refused
		case r.Work.stream != nil:
			r.Err = s.prepareStream(*r.Work.stream, b.seq, file)
		default:
			r.Changes, r.Err = recs.Prepare(r.Work.writes) // s.latest as written, on success
			for i := range r.Changes {
				b.seq++
				r.Changes[i].Seq, r.Changes[i].Time = b.seq, now
				s.wal.addChange(r.Changes[i], i == len(r.Changes)-1)
			}
			s.since += len(r.Changes)
		}
		if r.Err != nil {
			r.Answer()
			continue
		}
		b.requests = append(b.requests, r)
	}
	return b
}

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

// publish shows durable groups to readers.
func (s *Store) publish(done []*batch) {
	s.view.Lock()
	defer s.view.Unlock()
	for _, b := range done {
		for _, r := range b.requests {
			if op := r.Work.stream; op != nil {
				s.streams[op.id] = append(s.streams[op.id], *op)
				continue
			}
			for _, ch := range r.Changes {
				s.recent = append(s.recent, ch)
				track(s.records, ch)
			}
		}
		s.head = b.seq
	}
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

// track records in states what a change did to its record; events change
// no record.
func track(states map[string]api.RecordState, ch api.Change) {
	if ch.Kind != api.KindEvent {
		states[ch.Name] = api.RecordState{Version: ch.Version, Data: ch.Data, Exists: ch.Kind != api.KindDelete}
	}
}

func getRecord(tx *bolt.Tx, name string) (api.Record, bool) {
	v := tx.Bucket(bucketRecords).Get([]byte(name))
	if v == nil {
		return api.Record{Name: name}, false
	}
	return api.Record{
		Name:    name,
		Version: int64(binary.BigEndian.Uint64(v)),
		Data:    bytes.Clone(v[8:]),
	}, true
}

func seqKey(seq int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(seq))
	return k
}

func getInt(b *bolt.Bucket, key []byte) int64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// headOf returns the position of the last change: the last key of the
// log, or when the whole log was trimmed, the last position trimmed. It is
// derived rather than stored so that a commit writes no page but the log's
// and the records'.
func headOf(tx *bolt.Tx) int64 {
	k, _ := tx.Bucket(bucketLog).Cursor().Last()
	if k != nil {
		return int64(binary.BigEndian.Uint64(k))
	}
	return getInt(tx.Bucket(bucketMeta), keyTrimmed)
}

func putInt(b *bolt.Bucket, key []byte, n int64) error {
	return b.Put(key, seqKey(n))
}
