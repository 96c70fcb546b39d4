// Package embedded is the single-process store: records, the change log
// and stream state in one bbolt file, with a write-ahead log beside it.
// Writes are group committed: the commit loop appends every group of
// waiting writes to the write-ahead log at once, and a syncer fsyncs the
// log again as soon as its last fsync returns, for every group written in
// the meantime. A group is answered and shown to readers once on disk, in
// order. The bbolt file catches up at checkpoints, many groups in one
// transaction; until then readers see the groups since the last
// checkpoint in memory.
//
// The files: store.go opens and closes the store; commitloop.go is the
// commit loop (what the commit.Committer's loop does with a group:
// prepare it and append it to the log); syncer.go the log syncer (fsync,
// publish in order, break the store when an fsync fails); view.go what
// readers see; checkpoint.go recovery and checkpoints, and stall.go what
// a failed checkpoint does; wal.go the write-ahead log's format; file.go,
// log.go, streamfile.go and trim.go the bbolt file.
package embedded

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("embedded store is closed")

// Store is the embedded api.Store. It is safe for concurrent use; only one
// process may open a directory at a time.
//
// Its state is in groups, each with its owner or its lock: written is
// the commit loop's alone; pipe is shared by the loop, the syncer and
// every write (for its refusal), under pipe.mu; view is the readers',
// under view.mu. The syncer publishes holding both: pipe.mu first.
type Store struct {
	db  *bolt.DB
	wal *wal // encoded and appended to by the commit loop, fsynced by the syncer
	bus *Bus
	opt options

	committer *commit.Committer[work] // the write queue; its loop is the commit loop (commitGroup)
	written   written                 // the commit loop's: what the groups written to the log did
	pipe      pipeline                // groups written and not yet durable, and why writes fail
	view      view                    // what readers see that the bbolt file does not hold yet
	presence  presence                // who is online: in memory, under its own lock (presence.go)
	// ackWritten answers events once written to the log, before its fsync
	// (AckEventsWritten).
	ackWritten atomic.Bool
	// unsaved is at least the Size of the changes that the next
	// checkpoint adds to the file's log: those written to the
	// write-ahead log since the last one (with any that failed since),
	// and those Open replayed. Added to by Open and the commit loop,
	// zeroed by a checkpoint, read by Trim.
	unsaved   atomic.Int64
	Listening // listening's demand, listeners and choices, in memory (listen.go)
}

var _ api.Store = (*Store)(nil)

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
	if err := checkLength(file); err != nil {
		return nil, dataDirError(dir, err)
	}
	if err := checkPages(file); err != nil {
		return nil, dataDirError(dir, err)
	}
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
		written: written{records: map[string]api.RecordState{}, streamsPut: map[string]bool{}},
		pipe:    pipeline{wrote: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}}
	s.pipe.synced = sync.NewCond(&s.pipe.mu)
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
		Stop:    s.waitSynced,
	})
	return s, nil
}

// AckEventsWritten makes a write of events alone (a publish) return once
// its group is written to the log file, in the operating system's cache,
// rather than once the log is fsynced: EVENT_ACK=written. Readers still
// see it only after the fsync, as every change, and records are still
// answered only once durable. At most maxEarly events are answered and
// not yet durable at any time; past that a publish waits for its fsync.
// A process that is killed loses nothing that was answered (the system
// writes its cache to disk); a power loss or a kernel crash loses the
// events answered since the last fsync (at most maxEarly), and a failed
// fsync those that it did not make durable. Call it before the store is
// used.
func (s *Store) AckEventsWritten() { s.ackWritten.Store(true) }

// Bus returns the in-process Bus on which the store announces changes.
func (s *Store) Bus() *Bus { return s.bus }

// Close stops the commit loop after the group under way (its Stop waits
// for the syncer to publish every group written), then the syncer,
// checkpoints and closes the files.
func (s *Store) Close() error {
	if !s.committer.Close() {
		return nil
	}
	close(s.pipe.stop)
	<-s.pipe.stopped
	return errors.Join(s.checkpoint(), s.wal.close(), s.db.Close())
}

// Ping reports whether the files are usable.
func (s *Store) Ping(context.Context) error {
	if err := s.refusal(); err != nil {
		return err
	}
	return s.db.View(func(*bolt.Tx) error { return nil })
}
