package postgres

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The sequencer (PEER_URL). Writes spread over instances commit in small
// groups, one per instance, and each commit costs the database a fixed
// amount of work: spread writes cost it several times what the same
// writes cost through one instance. With PEER_URL set, the instances
// agree on one of them, the sequencer, and forward their writes to it
// (handlers' forward), so that its groups merge every instance's writes.
//
// The agreement is a lease in the sequencer table: the holder renews it
// every leaseTick for leaseTerm; when it runs out (the holder stopped or
// lost the database), the first instance to see it free takes it. It is a
// matter of speed only. Every commit still orders itself on log_head
// (write.go), so two instances that both believe they hold the lease, or
// a write forwarded to a former holder, are safe.

const (
	leaseTerm = 3 * time.Second
	leaseTick = time.Second
	// followFor is how long a read of the lease is followed: a follower
	// whose reads fail stops forwarding to the holder it read that long
	// after it read it.
	followFor = leaseTerm - leaseTick
	// avoidFor is how long a holder that could not be reached is passed
	// over (writes are served where they arrive meanwhile), doubled for
	// each time in a row that it could not be reached again, up to
	// maxAvoid: a holder that takes writes and never answers costs the
	// writes sent to it a round of timeouts each time it is tried.
	avoidFor = time.Second
	maxAvoid = 30 * time.Second
)

// Sequencer is this instance's view of the sequencer's lease, which it
// takes part in. Its methods are safe for concurrent use.
type Sequencer struct {
	store *Store
	self  string // this instance's PEER_URL
	token string // this instance's secret, sent with the writes forwarded to it
	log   *slog.Logger

	mu       sync.Mutex
	url, tok string        // the holder's URL and secret; "" when no lease is held
	mine     bool          // this instance holds the lease
	avoid    time.Time     // until then, writes are not forwarded to url
	misses   int           // the times in a row that url could not be reached
	stale    time.Time     // the last read of the lease is followed until then (followFor after it)
	released chan struct{} // closed once Run has ended and given the lease up if it could
	renewed  time.Time     // when this instance last took or renewed the lease
	// lastForward is when the other instances may have last sent a write
	// here (set by release): Handover waits until it has passed.
	lastForward time.Time
}

// Sequencer returns this instance's part in the sequencer's lease; self
// is the URL at which the other instances reach it (PEER_URL). Run takes
// part.
func (s *Store) Sequencer(self string) *Sequencer {
	return &Sequencer{store: s, self: self, token: rand.Text(), log: s.log, released: make(chan struct{})}
}

// Run takes part in the lease until ctx ends, then gives it up if held,
// so that another instance takes it at once rather than when it runs
// out. Writes forwarded meanwhile are still served: a draining server
// serves writes.
func (q *Sequencer) Run(ctx context.Context) {
	defer close(q.released)
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		if err := q.tick(ctx); err != nil && ctx.Err() == nil {
			q.log.Warn("sequencer lease: reading the lease failed; writes are served where they arrive until it is read", "err", err)
		}
		select {
		case <-ctx.Done():
			q.release()
			return
		case <-t.C:
		}
	}
}

// tick reads the lease, and renews it if held or takes it if it has run
// out. A follower only reads: taking or renewing locks the row.
func (q *Sequencer) tick(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, leaseTick)
	defer cancel()
	var url, tok string
	valid := false
	err := q.store.pool.QueryRow(ctx, `SELECT url, token, until > now() FROM sequencer`).Scan(&url, &tok, &valid)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		q.forget()
		return err
	}
	if !valid || tok == q.token {
		// Taken only if still run out, or still ours: of two instances
		// that saw it run out, the second finds it valid and takes nothing.
		err = q.store.pool.QueryRow(ctx, `
			INSERT INTO sequencer AS s (id, url, token, until)
			VALUES (1, $1, $2, now() + make_interval(secs => $3))
			ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, token = EXCLUDED.token, until = EXCLUDED.until
			WHERE s.until <= now() OR s.token = EXCLUDED.token
			RETURNING url, token`, q.self, q.token, leaseTerm.Seconds()).Scan(&url, &tok)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // another instance took it: read it next tick
			url, tok = "", ""
		case err != nil:
			q.forget()
			return err
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	mine := tok == q.token
	if mine != q.mine || url != q.url {
		q.log.Info("sequencer lease", "holder", url, "this_instance", mine)
	}
	if url != q.url {
		q.avoid, q.misses = time.Time{}, 0
	}
	q.url, q.tok, q.mine = url, tok, mine
	now := time.Now()
	if mine {
		q.renewed = now
	}
	q.stale = now.Add(followFor) // renewed or read within the term's margin
	return nil
}

// forget drops the lease read last: with the database unreachable, no
// holder is known, and writes are served where they arrive (and fail
// there as they would without a sequencer).
func (q *Sequencer) forget() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.url, q.tok, q.mine = "", "", false
}

// release gives the lease up if this instance holds it in the database
// (whatever it last read: a failed read forgets the lease, not the row).
func (q *Sequencer) release() {
	q.mu.Lock()
	q.mine, q.url, q.tok = false, "", ""
	renewed := q.renewed
	q.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), leaseTick)
	defer cancel()
	tag, err := q.store.pool.Exec(ctx, `UPDATE sequencer SET until = now() WHERE token = $1 AND until > now()`, q.token)
	// The others follow what they read for followFor: one that read the
	// lease just before this follows it that long; if it was not given
	// up, they follow it until it runs out, and that long after.
	switch {
	case err == nil && tag.RowsAffected() == 1:
		q.lastForward = time.Now().Add(followFor)
		q.log.Info("sequencer lease given up")
	case err != nil:
		q.log.Warn("sequencer lease: giving it up failed; it runs out in its term", "err", err)
		fallthrough
	default:
		if !renewed.IsZero() {
			q.lastForward = renewed.Add(leaseTerm + followFor)
		}
	}
}

// Handover waits until Run has ended and, if this instance held the
// lease, until no other instance still forwards writes here (release's
// lastForward, and a margin for writes on their way), or until ctx ends:
// a server that closed its connections at once would fail the writes
// they are still forwarding to it.
func (q *Sequencer) Handover(ctx context.Context) {
	select {
	case <-q.released:
	case <-ctx.Done():
		return
	}
	d := time.Until(q.lastForward.Add(leaseTick / 4))
	if q.lastForward.IsZero() || d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Holder returns where to forward a write, and the secret to send with
// it. ok is false when this instance serves its writes itself: it holds
// the lease, no lease is known, or the holder could not be connected to
// lately.
func (q *Sequencer) Holder() (url, token string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if q.mine || q.url == "" || now.Before(q.avoid) || now.After(q.stale) {
		return "", "", false
	}
	return q.url, q.tok, true
}

// Lease returns the holder of the lease and its secret, when another
// instance holds it as this one last read it (within followFor): the
// one to take a feed from (relay.go), whether or not writes go to it.
func (q *Sequencer) Lease() (url, token string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mine || q.url == "" || time.Now().After(q.stale) {
		return "", "", false
	}
	return q.url, q.tok, true
}

// Holds reports whether this instance holds the lease.
func (q *Sequencer) Holds() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.mine
}

// Unreachable passes over url for a while: a write could not be sent to
// it, or its answer did not come. The writes that fail together (sent
// before it was passed over) count once.
func (q *Sequencer) Unreachable(url string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if url != q.url || now.Before(q.avoid) {
		return
	}
	q.misses++
	q.avoid = now.Add(min(avoidFor<<min(q.misses-1, 8), maxAvoid))
}

// Reached says that url answered a write: the next time it cannot be
// reached, it is passed over for avoidFor again.
func (q *Sequencer) Reached(url string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if url == q.url {
		q.misses = 0
	}
}

// Peer reports whether token is a peer's: this instance's own secret (a
// write forwarded to it), or the holder's (one forwarded to a holder that
// has since changed). Such a request comes from an instance that read the
// lease from the database, and is served where it arrives.
func (q *Sequencer) Peer(token string) bool {
	if token == "" {
		return false
	}
	q.mu.Lock()
	tok := q.tok
	q.mu.Unlock()
	return subtle.ConstantTimeCompare([]byte(token), []byte(q.token)) == 1 ||
		(tok != "" && subtle.ConstantTimeCompare([]byte(token), []byte(tok)) == 1)
}
