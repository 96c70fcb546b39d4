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
