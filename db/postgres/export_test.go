package postgres

import "time"

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
