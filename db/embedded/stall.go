package embedded

import "time"

// A checkpoint fails when the disk is full: it needs new pages in the
// bbolt file. What it would write is safe in the write-ahead log and in
// memory, so the store does not break (a broken store waits for a
// restart); it stalls. Readers go on seeing every acknowledged write.
// Writes fail with the checkpoint's error, and Ping too, so that /readyz
// says 503. The commit loop tries the checkpoint again opt.retry after
// each failure (and a Trim that has work asks for one), and the first
// that succeeds ends the stall.
//
// Open stalls the same way: it replays the log into memory and
// checkpoints it, and when that fails it opens all the same, stalled. A
// restart after a disk-full then works at once, and the store is writable
// as soon as the disk has room.
//
// Why writes wait rather than go on in the log. After Open, the log may
// hold entries of its epoch after what was replayed, written and never
// acknowledged: a new write appended there could make them readable
// again. While running, a checkpoint that reported an error may have
// reached the disk all the same (bbolt wrote its meta page, the fsync
// failed), so the file may have moved to the next epoch: writes appended
// to the old one would be lost on a restart. And a full disk cannot take
// them for long: the log would soon need room too. The checkpoint that
// ends the stall starts a new epoch, which settles all three.

// refusal returns the error that every write fails with now, if any: the
// log failed, or the store is stalled.
func (s *Store) refusal() error {
	s.pipe.mu.Lock()
	defer s.pipe.mu.Unlock()
	if s.pipe.broken != nil {
		return s.pipe.broken
	}
	return s.pipe.stalled
}

// retry returns a channel that fires when a stalled store should try its
// checkpoint again, or nil when it is not stalled. Only the commit loop
// calls it, each time it waits for work: the time is counted from the
// failure, so that the writes it refuses meanwhile do not put it off.
func (s *Store) retry() <-chan time.Time {
	s.pipe.mu.Lock()
	defer s.pipe.mu.Unlock()
	if s.pipe.stalled == nil {
		return nil
	}
	return time.After(time.Until(s.pipe.retryAt))
}

// due reports whether the log is long enough for a checkpoint. A stalled
// store checkpoints only when retry says so or a Trim asks: the writes it
// refuses must not each cost a failing commit, which rebuilds bbolt's free
// list by walking the whole file.
func (s *Store) due() bool {
	s.pipe.mu.Lock()
	stalled := s.pipe.stalled != nil
	s.pipe.mu.Unlock()
	return !stalled && (s.wal.off >= checkpointBytes || s.written.since >= s.opt.every)
}
