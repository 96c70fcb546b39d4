package postgres

import (
	"context"
	"time"
)

// Reads returns how many connections the store has taken from its pool:
// every read of the database takes one.
func (s *Store) Reads() int64 { return s.pool.Stat().AcquireCount() }

// SetHeadCheck sets how long a Store opened after it hears no
// notification of changes before it reads the head itself, until the
// test ends.
func SetHeadCheck(t interface{ Cleanup(func()) }, d time.Duration) {
	old := headCheck
	headCheck = d
	t.Cleanup(func() { headCheck = old })
}

// SetRecheck sets how long after a check of the feeds that failed the
// next one may begin, for the Stores opened after it, until the test ends.
func SetRecheck(t interface{ Cleanup(func()) }, d time.Duration) {
	old := recheck
	recheck = d
	t.Cleanup(func() { recheck = old })
}

// SetBeforeFlush makes the store's write groups call f between their
// commit and their WAL flush; call it while no write is under way.
func (s *Store) SetBeforeFlush(f func()) { s.beforeFlush = f }

// SetFlushAfter sets how long the reads of a Store opened after it wait
// for what they saw to be announced before they flush the WAL themselves,
// until the test ends.
func SetFlushAfter(t interface{ Cleanup(func()) }, d time.Duration) {
	old := flushAfter
	flushAfter = d
	t.Cleanup(func() { flushAfter = old })
}

// Settle waits until the store's listener is connected and has been
// counted as begun (Store.began): until then, that statement (and its
// flush) may make a write durable behind a test's back.
func (s *Store) Settle(ctx context.Context) {
	for s.bus.Ready(ctx) != nil || s.headReads.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

// Waiting returns how many writes wait for the store's next group.
func (s *Store) Waiting() int { return s.committer.Waiting() }
