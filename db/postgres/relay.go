package postgres

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Announcements over feeds. PostgreSQL wakes every listening backend of
// a database for any NOTIFY in it, whatever its channel, and each of
// those backends wakes its instance: a group's notification costs the
// database and every instance a wake-up. With PEER_URL the other
// instances keep a feed from the sequencer (package peer), which sends
// them the text of every notification of its groups; once every instance
// that listens is seen to take them from a feed, its groups go without a
// NOTIFY.
//
// Who listens is read from pg_stat_activity: each Store's listener
// connects as ListenerName, and a feed names the backend of its
// instance's listener (its pid). But that read can be late: an instance
// that has just begun to listen (its first connection, or a reconnect) is
// not in the read that found every listener fed. So each beginning
// counts itself on log_head (migrations/0013), after its LISTEN and in a
// statement that takes log_head's lock as a group's does, and every
// group's statement returns that count. A group goes without a NOTIFY
// only when the count it saw is the one that the check which found every
// listener fed read in the same snapshot as pg_stat_activity:
//
//   - A listener that began after that check counted itself before any
//     group that returns a larger count, and such groups are notified.
//     What committed before its count it reads from the log: the count's
//     statement returns the log's head, which it takes as announced
//     (Store.began).
//   - A listener that the check saw had a feed then, and still has: a
//     feed that ends sets the check aside (the stop that Feed returns)
//     before any later group is sent, and groups are sent to every feed
//     and judged under the same lock; a feed that does not take a group
//     ends at that group, which is notified. A feed that either end
//     closes ends in order (package peer): the sequencer stops sending,
//     writes out what it took and a last frame, then closes, and the
//     instance reads it all. A feed that ends otherwise (heartbeats stop,
//     or its connection fails) may lose what it took: the instance at
//     the other end counts its listener as begun again (CatchUp), which
//     is the case above.
//   - A listener that does not count itself (an instance of an older
//     version; one whose count keeps failing) is found by the next
//     check: while groups go without a NOTIFY a check runs every
//     refresh, and one older than two refreshes counts for nothing.
//     Until then its instance learns of them from its own look at the
//     head (Store.watchHead).
//
// So a change reaches every instance by a notification, a feed, or a read
// of the log that something after it causes (or Store.watchHead); the
// log stays the truth, as with notifications alone.
type relay struct {
	mu    sync.Mutex
	feeds map[*feed]struct{}
	ended uint64 // counts the feeds ended (and unfed): a check begun before one is void
	// fed is the count of listeners begun (log_head.listeners) at which
	// every listener was seen with a feed; -1: none.
	fed      int64
	checking bool
	checked  time.Time     // when the last check that found every listener fed began
	next     time.Time     // no check begins before, unless a feed begins
	failed   int           // the checks in a row that found a listener without a feed
	recheck  time.Duration // recheck, as the Store was opened
	checks   sync.WaitGroup
	closed   bool         // the Store is closing: no check begins
	relayed  atomic.Int64 // the notifications taken from a feed (Store.Relayed)
	// waits has a token when a read waited for the tail (Store.Waits).
	waits chan struct{}
}

// close waits for the check under way, if any, and lets no other begin.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.checks.Wait()
}

// feed is another instance's feed: its listener's backend, and how it
// takes the texts of notifications. send is called under the relay's
// lock, in order, and must not block; it reports whether it took them.
type feed struct {
	pid  uint32
	send func(notes []string) bool
}

// recheck is how long after a check that found a listener without a
// feed the next one may begin, unless a feed begins meanwhile; twice as
// long after each such check in a row, up to maxRecheck. Instances
// without PEER_URL never have a feed: each of them checks that often
// while it commits, in case it is left alone.
var recheck = time.Second

// maxRecheck bounds the wait between checks that fail, and refresh is
// how often checks run while they pass.
const (
	maxRecheck = 30 * time.Second
	refresh    = time.Second
)

// Feed takes the announcements of this instance's groups to the
// instance whose listener's backend is pid: send gets the text of each
// notification, in order, called under a lock (it must not block), and
// reports whether it took them: the feed ends when it does not, and the
// groups it did not take are notified. stop ends the feed; once it
// returns, send is not called again.
func (s *Store) Feed(pid uint32, send func(notes []string) bool) (stop func()) {
	r := &s.relay
	f := &feed{pid: pid, send: send}
	r.mu.Lock()
	if r.feeds == nil {
		r.feeds = map[*feed]struct{}{}
	}
	r.feeds[f] = struct{}{}
	r.next, r.failed = time.Time{}, 0
	r.mu.Unlock()
	s.checkFeeds()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.end(f)
	}
}

// end ends a feed, and sets aside what the last check found; r.mu is held.
func (r *relay) end(f *feed) {
	if _, ok := r.feeds[f]; ok {
		delete(r.feeds, f)
		r.ended++
		r.fed = -1
	}
}

// relayed sends notes, of groups that saw first to last listeners begun,
// to every feed, and reports whether they need no NOTIFY: every listener
// takes them from a feed. When they do need one, a check begins (at most
// one at a time, and not within recheck of one that failed).
func (s *Store) relayed(notes []string, first, last int64) bool {
	r := &s.relay
	r.mu.Lock()
	for f := range r.feeds {
		if !f.send(notes) {
			r.end(f)
		}
	}
	// A check found every listener fed, and is recent: a listener that
	// does not count itself is found within about two refreshes.
	since := time.Since(r.checked)
	fed := r.fed >= 0 && first == r.fed && last == r.fed && since < 2*refresh
	stale := since >= refresh
	r.mu.Unlock()
	if !fed || stale {
		s.checkFeeds()
	}
	return fed
}

// unfed sets aside what the last check found: this instance's listener
// connected again, so its backend, which the check left out, changed.
func (r *relay) unfed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fed = -1
	r.ended++ // and a check under way
}

// checkFeeds begins a check, unless one is under way or recheck has not
// passed since one failed.
func (s *Store) checkFeeds() {
	r := &s.relay
	r.mu.Lock()
	if r.checking || r.closed || time.Now().Before(r.next) {
		r.mu.Unlock()
		return
	}
	r.checking = true
	ended := r.ended
	r.checks.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.checks.Done()
		s.check(ended)
	}()
}

// check reads who listens and the count of listeners begun, in one
// snapshot, and takes that count as fed when every listener but this
// instance's own has a feed, and no feed ended since the check began. It
// trusts the read only when it finds this instance's own listener in it:
// a listener connected through something that hides its name or its
// backend would not be seen.
func (s *Store) check(ended uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	began := time.Now()
	own := s.bus.l.pid.Load()
	var count int64
	var pids []uint32
	err := s.pool.QueryRow(ctx, `
		SELECT (SELECT listeners FROM log_head LIMIT 1),
			array(SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1)`,
		ListenerName).Scan(&count, &pids)
	if err != nil {
		s.log.Debug("check the listeners' feeds", "err", err)
	}
	r := &s.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checking = false
	fed := err == nil && own != 0 && r.ended == ended && slices.Contains(pids, own)
	for _, pid := range pids {
		if !fed {
			break
		}
		fed = pid == own || r.has(pid)
	}
	if fed {
		r.fed, r.failed, r.checked = count, 0, began
		return
	}
	r.fed = -1
	r.next = time.Now().Add(min(r.recheck<<min(r.failed, 5), maxRecheck))
	r.failed++
}

// has reports whether a feed goes to pid; r.mu is held.
func (r *relay) has(pid uint32) bool {
	for f := range r.feeds {
		if f.pid == pid {
			return true
		}
	}
	return false
}

// Relayed hands the text of a notification that came by a feed (with
// the Bus's "=" marker) to this instance, as if from the listener; more
// says that another has come already, to which the handlers' wake-up is
// left, as the listener leaves it to the last notification it has read.
func (s *Store) Relayed(note string, more bool) {
	if len(note) > 0 && note[0] == '=' {
		s.relay.relayed.Add(1)
		s.bus.l.changes(note[1:], true)
	}
	if !more {
		s.bus.l.flushWakes()
	}
}

// FeedNotifications returns how many notifications this instance took
// from its feeds (Relayed).
func (s *Store) FeedNotifications() int64 { return s.relay.relayed.Load() }

// Waits returns a channel that has a token once a read waited for a
// position to be announced (Store.durable) since it was last taken: a
// feed that the sequencer gathers (peer.Pace) should go at once.
func (s *Store) Waits() <-chan struct{} { return s.relay.waits }

// ListenerPID returns the backend of this instance's listener (its
// feed's name), 0 while it is not connected.
func (s *Store) ListenerPID() uint32 { return s.bus.l.pid.Load() }

// CatchUp counts this instance's listener as begun again (began): a
// feed from the sequencer ended otherwise than in order, and what it sent
// last may not have arrived. The count makes every later group of the
// sequencer's notified until a check finds a feed again, and the head it
// reads covers every group before it.
func (s *Store) CatchUp(ctx context.Context) error { return s.began(ctx) }

// began counts this instance's listener as begun (relay), once it
// listens after a connect, and takes the log's head that the count's
// statement saw, made durable, as announced: what committed before it
// may have gone without a notification this listener could see. The
// count commits without waiting for its flush, so that log_head's lock
// is let go at once, as a group's is; the flush follows.
func (s *Store) began(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var head int64
	err := s.pool.QueryRow(ctx, `
		WITH b AS (UPDATE log_head SET listeners = listeners + 1 RETURNING seq)
		SELECT (SELECT seq FROM b), set_config('synchronous_commit', 'off', true)`).Scan(&head, nil)
	if err != nil {
		return err
	}
	if err := s.flushFor(ctx, head); err != nil {
		return err
	}
	s.bus.l.changes(strconv.FormatInt(head, 10), false)
	return nil
}
