package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

const (
	// notifyTimeout bounds a notification transaction.
	notifyTimeout = 5 * time.Second
	// maxHeld bounds the notifications that wait for an interval to end:
	// more go at once, so that a transaction's statement stays small.
	maxHeld = 256
)

// announcer sends the notifications of committed groups on the changes
// topic (notify.go), in order, in transactions of their own after their
// groups', so that no write transaction takes NOTIFY's cluster-wide lock
// (see the package comment). Notifications that go together cost every
// listening instance and its backend one wake-up. So a group whose
// successor already waits, at least as large as itself, leaves its
// notification to it (the notification's round trip would not have made
// the successor larger). And no transaction starts less than interval
// after the one before (unless a group starts over, or maxHeld wait):
// the notifications of the groups committed meanwhile wait for the next
// (a timer sends them if no group comes), so that while an instance
// commits more often than that, the others learn of its commits up to
// interval later. A notification that cannot be sent is lost for the
// other instances, which learn of its group from the next notification
// or their check of the head (Store.watchHead).
type announcer struct {
	// send sends notes, of groups that saw first to last listeners begun
	// (relay.go), and says whether a transaction carried them; it must
	// not keep notes.
	send     func(notes []string, first, last int64) (notified bool, err error)
	interval atomic.Int64 // a time.Duration

	// mu guards the fields below and is held across a send, so that
	// sends go in order.
	mu    sync.Mutex
	held  []string
	first int64       // the listeners begun that held's first group saw
	last  int64       // and its last
	sent  time.Time   // when the last send began
	timer *time.Timer // sends what is held when interval is over; nil: not armed
	armed uint64      // counts the timers armed: a timer that fired late finds another number

	// groups counts the notifications sent (to the feeds alone, or with
	// a NOTIFY), and sends the transactions that carried them
	// (Store.Notifications).
	groups, sends atomic.Int64
}

func newAnnouncer(send func(notes []string, first, last int64) (bool, error)) *announcer {
	return &announcer{send: send}
}

// done takes the notification of a group that the committer's loop has
// just answered ("" when it committed nothing), with the listeners begun
// that its statement saw; successor says whether
// the next group waits already, at least as large. The loop sends on its
// own round trip whatever is due, so that a group left to its successor
// waits for one group at most.
func (a *announcer) done(note string, listeners int64, successor bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if note != "" {
		if len(a.held) == 0 {
			a.first = listeners
		}
		a.held = append(a.held, note)
		a.last = listeners
	}
	if len(a.held) == 0 {
		return
	}
	if wait := time.Duration(a.interval.Load()) - time.Since(a.sent); wait > 0 && len(a.held) < maxHeld {
		if a.timer == nil {
			a.armed++
			armed := a.armed
			a.timer = time.AfterFunc(wait, func() { a.fire(armed) })
		}
		return
	}
	if note != "" && successor && len(a.held) == 1 {
		return
	}
	a.sendLocked()
}

// fire sends what is held once the interval is over, unless the timer
// armed was stopped meanwhile (what it was for is sent).
func (a *announcer) fire(armed uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil && a.armed == armed {
		a.sendLocked()
	}
}

// flush sends what is held: before a group starts over (so that a
// notification waits for one attempt at most), and at Close.
func (a *announcer) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sendLocked()
}

func (a *announcer) sendLocked() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if len(a.held) == 0 {
		return
	}
	a.sent = time.Now()
	if notified, err := a.send(a.held, a.first, a.last); err == nil {
		a.groups.Add(int64(len(a.held)))
		if notified {
			a.sends.Add(1)
		}
	}
	clear(a.held)
	a.held = a.held[:0]
}

// Notifications returns how many committed groups this instance has
// announced to the others, and in how many NOTIFY transactions: what
// NOTIFY_INTERVAL, the gathering of notifications and the feeds save.
func (s *Store) Notifications() (groups, transactions int64) {
	return s.announcer.groups.Load(), s.announcer.sends.Load()
}

// SetNotifyInterval sets the least time between two of this instance's
// notification transactions (see announcer); 0: none.
func (s *Store) SetNotifyInterval(d time.Duration) { s.announcer.interval.Store(int64(d)) }

// notify sends notes to the feeds (relay.go) and, unless every listener
// takes them from one, in one transaction, in order. It writes no WAL
// and needs no flush: synchronous_commit is off for it. A failure is
// logged.
func (s *Store) notify(notes []string, first, last int64) (bool, error) {
	if s.relayed(notes, first, last) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	// A target list is evaluated left to right: the notes go in order.
	var sql strings.Builder
	sql.WriteString(`SELECT set_config('synchronous_commit', 'off', true)`)
	args := make([]any, 1, 1+len(notes))
	args[0] = channel(api.TopicChanges)
	for _, n := range notes {
		args = append(args, n)
		fmt.Fprintf(&sql, ", pg_notify($1, $%d)", len(args))
	}
	_, err := s.pool.Exec(ctx, sql.String(), args...)
	if err != nil {
		s.log.Warn("notification of committed changes not sent", "err", err, "groups", len(notes))
	}
	return err == nil, err
}
