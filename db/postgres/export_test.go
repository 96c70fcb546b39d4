package postgres

// Reads returns how many connections the store has taken from its pool:
// every read of the database takes one.
func (s *Store) Reads() int64 { return s.pool.Stat().AcquireCount() }
