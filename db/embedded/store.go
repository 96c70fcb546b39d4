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
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

var _ api.Store = (*Store)(nil)

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
