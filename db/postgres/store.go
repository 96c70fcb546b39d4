// Package postgres is the api.Store and api.Bus on PostgreSQL (pgx v5), for
// any number of instances sharing one database. The schema lives in the
// migrations package and is applied by Open and Migrate (goose, under a
// session-level advisory lock so that instances starting together migrate
// once).
//
// # Log order
//
// Every change gets a position (api.Change.Seq) in one log, and readers ask
// for "everything after X". A sequence taken inside a transaction is not
// commit order: seq 11 can commit, and be read, before seq 10, and a reader
// that moved past 11 would never see 10. Here positions come from a
// single-row counter instead, as the last step of the writing transaction:
//
//	UPDATE log_head SET seq = seq + n, time = greatest(time, clock_timestamp()) RETURNING seq, time
//
// The row lock this takes is held until the transaction has committed and
// become visible (Postgres releases locks after it ends the transaction in
// the proc array), and a second writer's UPDATE waits for it, then builds on
// the committed value. So the writer with the higher positions always
// becomes visible after the one with the lower positions: any snapshot sees
// a prefix 1..H of the log, with no hole, and Changes(after) never skips an
// entry that commits later. Positions are consecutive, and rolled-back
// transactions give theirs back. The head's time only moves forward, so
// log times follow positions and Trim cuts a prefix.
//
// The cost is that writers serialise on that row from the moment they take
// positions until their commit is done. Four things keep that short: the
// counter is taken after every record has been locked, read, passed
// through Apply and written, so only the log insert and the commit run
// under it; the statement that takes it also inserts the log rows, and
// goes in one pipeline with the record writes and COMMIT, so the server
// holds the lock for that statement and the commit and never waits on the
// client meanwhile (write.go); the commit is asynchronous, so the lock is
// let go without waiting for the WAL flush (see Durability); and writes
// are group committed: one goroutine per Store (the loop of a
// commit.Committer) takes every request waiting when a transaction starts
// (up to commit.MaxGroup; it lingers for more, up to linger, when the group
// before held several) into one transaction, so one commit, one flush
// and one notification serve many writes. The notification is not sent
// by the write transaction (NOTIFY takes a lock of the whole cluster from
// its commit until it ends, WAL flush included, and would serialise with
// every other notification: the Bus's, presence, RPC) but after it, in a
// transaction of its own (see below), which may carry those of several
// groups (announcer). Groups of different instances never merge (unless the
// instances forward their writes to one: Sequencer), but their flushes
// do: the database flushes the WAL of every commit waiting at once.
//
// # Durability
//
// A group commits asynchronously and then waits for the flush in a
// transaction of its own (flushWAL, same pipeline): it is acknowledged,
// announced and taken into this instance's tail only after that. But other
// transactions see its changes from its commit on, before they are durable,
// and a crash of the database in between would take them back and give
// their positions and versions again. So no read answers with what it saw
// before that is durable: every read of records or of the log learns the
// head H of the log its snapshot saw (log_head in the same statement, or
// the last position read), and answers once every position up to H is
// durable (Store.durable). That is known when the tail's head has reached
// H: notifications are sent after their group's flush, so every position
// announced is durable, and so is every one this instance committed or a
// checked read saw. (Direct SQL writes, whose triggers notify as they
// commit, must commit synchronously: PostgreSQL's default.) A read of
// records that answers with no position (Get, List) need not wait when none
// of the changes after the tail's head, up to H, touched the records it
// read (the statement itself looks, in the log): what it read is then as
// the log up to the tail's head left it (Store.settled). Otherwise, and for
// reads of the log itself, a read that sees a group whose notification has
// not arrived waits for it, typically a flush and a round trip; when none
// comes (lost with its writer), or the listener is not connected, it
// flushes the WAL itself, whose commit comes after everything it saw; reads
// that wait meanwhile share that flush. After the listener reconnects, the
// head is read again with a flush. The commit order above holds as before:
// the commit record is written, and the transaction ends in the proc array,
// before the row lock is let go, so commit records and visibility follow
// positions, and the WAL flushed up to one group's flush holds every lower
// position.
//
// The alternative, a visibility horizon (bigserial positions, readers stop
// below the oldest running writer's transaction id), lets writers run in
// parallel but makes every reader wait for the slowest open transaction and
// is harder to prove; with group commit the counter is not the bottleneck.
//
// Records touched by a group are locked with advisory locks of their names
// in key order, then one SELECT ... FOR UPDATE in name order, so two
// instances' groups never deadlock on them and a name without a row (new,
// or deleted: its tombstone keeps its last version) is held too; a record
// created concurrently by another program (the insert finds the name
// taken) or a deadlock involving rows written by other programs makes the
// whole group start over, calling Apply again.
//
// # Notifications
//
// Once a group's transaction has committed (and its writers are
// answered), the committer sends a notification on the channel of
// api.TopicChanges, in a transaction of its own that writes no WAL, so
// nothing is announced that did not commit. It carries the group's last
// position and as many of its changes as fit (notify.go); the handlers of
// the topic get the head. Notifications of different groups may arrive
// out of the order of positions, and one may be lost (the writer dies
// between its commit and its notification): each Store keeps the tail of
// the log it learnt of, and Changes answers from it only with consecutive
// positions up to the head announced, reading the log for any gap; the
// log stays the truth, and an answer that nothing follows a position
// always comes from the log. The commit order above is what makes this
// enough: when a notification of position W arrives, every position below
// W has committed and is visible, so a reader woken by it that reads up
// to W misses nothing, and a notification of a lower position that comes
// later brings nothing new (handlers are not woken by it). A lost
// notification that no other follows is found by a check of the head
// while no notification comes (Store.watchHead). The Bus's listener
// (listener.go) reconnects with backoff, empties the tail and then wakes
// every handler with nil, and readers catch up from the log by position.
// With PEER_URL, the other instances take the sequencer's announcements
// from feeds instead, and its groups go without a NOTIFY once every
// listener is seen to have one (relay.go).
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

var _ api.Store = (*Store)(nil)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("postgres store is closed")

// Store is the Postgres api.Store. It is safe for concurrent use, and any
// number of Stores (in one process or many) may share one database.
type Store struct {
	pool *pgxpool.Pool
	bus  *Bus
	log  *slog.Logger

	committer   *commit.Committer[[]api.Write] // the write queue; its loop runs s.commitGroup
	tail        tail                           // the last changes learnt of (notify.go)
	flushAfter  time.Duration                  // see flushAfter
	flushes     flushes                        // the reads' own flushes (Store.flushFor)
	reconnected chan struct{}                  // the listener reconnected (Store.lost): watchHead counts it as begun
	headReads   atomic.Int64                   // the listener's beginnings that watchHead counted (tests wait for them)
	closeOnce   sync.Once
	unlisten    func()             // ends the tail's own subscription to the changes topic
	stopWatch   context.CancelFunc // ends watchHead
	watched     chan struct{}      // closed when watchHead has ended

	// beforeFlush, when set (by tests, while no write is under way), is
	// called between a group's commit and its flush, which then runs in a
	// round trip of its own.
	beforeFlush func()

	// announcer sends the notifications of committed groups, and relay
	// to the feeds.
	announcer *announcer
	relay     relay
}

// headCheck is how long an instance hears no notification of changes
// before it reads the log's head itself (watchHead): it bounds how late
// a commit whose notification was lost reaches the other instances.
var headCheck = time.Second

// beginRetry is how long after a failed count of the listener as begun
// watchHead tries again.
const beginRetry = 200 * time.Millisecond

// Open connects to the database at url (which may go through a pooler),
// applies the migrations through directURL (a direct connection; "" means
// url) and starts the Bus's listener on directURL. log may be nil.
func Open(ctx context.Context, url, directURL string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if directURL == "" {
		directURL = url
	}
	if err := migrate(ctx, directURL, log); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	s := &Store{pool: pool, log: log, flushAfter: flushAfter, reconnected: make(chan struct{}, 1), relay: relay{fed: -1, recheck: recheck, waits: make(chan struct{}, 1)}}
	bus, err := newBus(pool, directURL, log, s.tail.onChanges, s.lost)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.bus = bus
	// The tail follows every notification of changes, so that reads learn
	// soon that what they saw is durable (Store.durable), whether or not
	// anything else here subscribes; then it starts at the log's head.
	s.unlisten = bus.SubscribeWake(api.TopicChanges, func(int64) {})
	if err := s.durableHead(ctx); err != nil {
		bus.close()
		pool.Close()
		return nil, err
	}
	s.announcer = newAnnouncer(s.notify)
	s.committer = commit.Start(commit.Config[[]api.Write]{Commit: s.commitGroup, Closed: ErrClosed,
		Linger: linger, Stop: s.announcer.flush})
	var watch context.Context
	watch, s.stopWatch = context.WithCancel(context.Background())
	s.watched = make(chan struct{})
	go s.watchHead(watch)
	return s, nil
}

// watchHead reads the log's head every headCheck in which no notification
// of changes came, and announces it to this instance's handlers when it
// is beyond every position announced: so a commit whose notification was
// lost (notify.go) reaches them within about two headChecks, and a busy
// instance, which learns of such a commit from the next notification,
// never asks. It asks only while the listener is connected: a reconnect
// wakes the handlers anyway. After each connect of the listener, it
// counts the listener as begun (Store.began), at once and then every
// beginRetry until that succeeds.
func (s *Store) watchHead(ctx context.Context) {
	defer close(s.watched)
	t := time.NewTicker(headCheck)
	defer t.Stop()
	begin := false
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reconnected:
			begin = true
		case <-retry:
		case <-t.C:
		}
		retry = nil
		if begin {
			if err := s.began(ctx); err != nil {
				s.log.Debug("count the listener as begun", "err", err)
				retry = time.After(beginRetry)
			} else {
				begin = false
				s.headReads.Add(1)
			}
			continue
		}
		if noted, known := s.tail.announced(); noted || s.bus.l.ready() != nil {
			continue
		} else if head, err := s.head(ctx); err != nil {
			s.log.Debug("read the log's head", "err", err)
		} else if head <= known {
			continue
		} else if err := s.flushHead(ctx, head); err != nil {
			s.log.Debug("flush the log's head", "err", err)
		} else {
			s.bus.l.changes(strconv.FormatInt(head, 10), false)
		}
	}
}

// lost is the listener's word that it reconnected: what was announced
// meanwhile is unknown, so the tail forgets its changes, the relay what
// its last check found (it left this listener's backend out), and watchHead
// counts the listener as begun (Store.began), which reads the log's head
// for the reads that wait for it (Store.durable).
func (s *Store) lost() {
	s.tail.reset()
	s.relay.unfed()
	select {
	case s.reconnected <- struct{}{}:
	default:
	}
}

// durableHead reads the log's head in a transaction that flushes what it
// saw, and takes it as the tail's head.
func (s *Store) durableHead(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT seq FROM log_head LIMIT 1), `+flushing).Scan(&head, nil, nil); err != nil {
		return fmt.Errorf("read the log's head: %w", err)
	}
	s.tail.add(nil, head)
	return nil
}

// flushHead is flushFor(head) within connectTimeout.
func (s *Store) flushHead(ctx context.Context, head int64) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return s.flushFor(ctx, head)
}

// head reads the log's last position.
func (s *Store) head(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var head int64
	err := s.pool.QueryRow(ctx, `SELECT seq FROM log_head LIMIT 1`).Scan(&head)
	return head, err
}

// linger is the longest a write group waits for more requests (a write
// or a batch each) to join it, when the group before held several
// (commit.Config). Measured with make scale, one instance, 8 writers, 4
// rounds alternated: 200 µs made groups of 6.0-6.6 writes instead of
// 4.5, 5,030-5,650 writes/s instead of 4,580-5,130 and 70-88 µs of
// Postgres CPU per write instead of 92-102, with the same p99 (3.5-3.8
// ms); 64 writers, and writes spread over 4 instances with PEER_URL, did
// as well or better. 500 µs gathered more and did no better. Events
// paced at 1,000/s from one instance to a stream on another got about
// 0.1 ms more p99 (BenchmarkPGLatency).
const linger = 200 * time.Microsecond

// flushAfter is how long a read waits for the positions it saw to be
// announced before it flushes the WAL itself (Store.durable), for the
// Stores opened after it is set.
var flushAfter = 50 * time.Millisecond

// durable returns once every position up to h is durable, so that a read
// that saw the log up to h may answer (package comment). That is at once
// when the tail's head has reached h; else it waits for a notification
// (sent after its group's flush) that moves the head there, and after
// flushAfter (a notification lost, a reader far ahead of this instance's
// listener), or at once while the listener is not connected, flushes the
// WAL itself (flushFor). A wait is told to Waits.
func (s *Store) durable(ctx context.Context, h int64) error {
	if s.bus.l.ready() == nil && s.tail.waitHead(ctx, h, s.flushAfter, s.relay.waits) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.flushFor(ctx, h)
}

// headTouching is SQL for a row h of the log's head (seq) and whether the
// changes of records after position d up to it (touched), those that a
// read may not yet know to be durable, include one that cond (a condition
// on l.name, whose comparisons must use the C collation of records.name)
// selects; true as well when there are more than 1,000 of them, or when
// Trim removed some (log_trimmed moves with its delete).
func headTouching(d, cond string) string {
	return `(SELECT lh.seq, lh.seq > ` + d + ` AND (lh.seq - ` + d + ` > 1000
			OR (SELECT seq FROM log_trimmed LIMIT 1) > ` + d + `
			OR EXISTS (SELECT FROM log l WHERE l.seq > ` + d + ` AND l.seq <= lh.seq AND l.kind <> 'event' AND ` + cond + `)
		) AS touched
		FROM log_head lh LIMIT 1) h`
}

// settled returns once what a read of records (Get, List) saw is durable:
// it saw the log up to head while the tail's head was d, so at once when d
// has reached head, or when no change after d touched what it read (which
// is then as the log up to d left it); else once head is durable
// (Store.durable). A read that answers with a position (Snapshot,
// ListData) waits for that position instead, which callers take for the
// log's head.
func (s *Store) settled(ctx context.Context, head, d int64, touched bool) error {
	if head <= d || !touched {
		return nil
	}
	return s.durable(ctx, head)
}

// flushes lets concurrent reads share their flushes.
type flushes struct {
	mu      sync.Mutex
	want    int64         // the highest position a read waits for
	running chan struct{} // closed when the flush under way ends; nil when none
}

// flushFor makes the head durable up to h, which a read saw, by a flush
// that starts after that read: its commit comes after every commit the
// read saw. Reads that wait meanwhile share one flush: each one covers
// every position asked for before it started.
func (s *Store) flushFor(ctx context.Context, h int64) error {
	f := &s.flushes
	for {
		if s.tail.current() >= h {
			return nil
		}
		f.mu.Lock()
		f.want = max(f.want, h)
		if running := f.running; running != nil {
			f.mu.Unlock()
			select {
			case <-running:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		done, want := make(chan struct{}), f.want
		f.running = done
		f.mu.Unlock()
		_, err := s.pool.Exec(ctx, flushWAL)
		if err == nil {
			s.tail.add(nil, want)
		}
		f.mu.Lock()
		f.running = nil
		f.mu.Unlock()
		close(done)
		if err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
}

// Bus returns the Bus that carries this store's notifications, and others'.
func (s *Store) Bus() *Bus { return s.bus }

// Close stops the commit loop after the transaction under way, then the
// listener and the pool. It may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopWatch()
		<-s.watched
		s.committer.Close()
		s.relay.close() // the last group's may have begun a check
		s.unlisten()
		s.bus.close()
		s.pool.Close()
	})
	return nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Get returns a record, or NOT_FOUND.
func (s *Store) Get(ctx context.Context, name string) (_ api.Record, err error) {
	defer unavailable(&err)
	rec := api.Record{Name: name}
	var head int64
	var touched bool
	var version *int64
	d := s.tail.current()
	err = s.pool.QueryRow(ctx, `
		SELECT h.seq, h.touched, r.version, r.data
		FROM `+headTouching("$2", "l.name = $1")+` LEFT JOIN records r ON r.name = $1`, name, d).
		Scan(&head, &touched, &version, (*[]byte)(&rec.Data))
	if err == nil {
		err = s.settled(ctx, head, d, touched)
	}
	if err != nil {
		return api.Record{}, fmt.Errorf("get record %s: %w", name, err)
	}
	if version == nil {
		return api.Record{}, api.NotFound(name)
	}
	rec.Version = *version
	return rec, nil
}

// List returns records under prefix after the cursor, in byte order of
// names (the column's collation is C), without their data.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) (_ []api.Record, err error) {
	defer unavailable(&err)
	_, out, err := s.page(ctx, false, prefix, after, limit)
	return out, err
}

// prefixEnd returns the smallest string after every string that starts
// with prefix, or "" when there is none (or prefix is empty).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// Snapshot reads records and the log head in one statement, so one
// snapshot: the records are as of that position. log_head is read as one
// row (LIMIT 1): the planner's estimate of it grows with the dead versions
// that every write leaves (trim.go).
func (s *Store) Snapshot(ctx context.Context, names []string) (_ int64, _ []api.Record, err error) {
	defer unavailable(&err)
	if names == nil {
		names = []string{}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT h.seq, r.name, r.version, r.data
		FROM (SELECT seq FROM log_head LIMIT 1) h LEFT JOIN records r ON r.name = ANY($1::text[])`, names)
	if err != nil {
		return 0, nil, fmt.Errorf("snapshot: %w", err)
	}
	defer rows.Close()
	var pos int64
	found := make(map[string]api.Record, len(names))
	for rows.Next() {
		var name *string
		var rec api.Record
		var version *int64
		if err := rows.Scan(&pos, &name, &version, (*[]byte)(&rec.Data)); err != nil {
			return 0, nil, fmt.Errorf("snapshot: %w", err)
		}
		if name != nil {
			rec.Name, rec.Version = *name, *version
			found[*name] = rec
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := s.durable(ctx, pos); err != nil {
		return 0, nil, fmt.Errorf("snapshot: %w", err)
	}
	out := make([]api.Record, len(names))
	for i, n := range names {
		out[i] = found[n]
		out[i].Name = n
	}
	return pos, out, nil
}

// Changes returns up to limit changes after position after. The trimmed
// position and the changes are read by one statement, so one snapshot.
//
// It answers from the changes that notifications carried when they reach
// as far as the notifications announced (notify.go), and reads the log
// otherwise; the changes it reads join that tail.
func (s *Store) Changes(ctx context.Context, after int64, limit int) (_ []api.Change, err error) {
	defer unavailable(&err)
	if cs, ok := s.tail.read(after, limit); ok {
		return cs, nil
	}
	gen := s.tail.generation()
	rows, err := s.pool.Query(ctx, `
		SELECT t.seq, l.seq, l.time, l.kind, l.name, l.version, l.data, l.publisher
		FROM (SELECT seq FROM log_trimmed LIMIT 1) t LEFT JOIN LATERAL (
			SELECT * FROM log WHERE seq > $1 ORDER BY seq LIMIT $2
		) l ON true`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	defer rows.Close()
	var out []api.Change
	for rows.Next() {
		var trimmed int64
		var seq, version *int64
		var at *time.Time
		var kind, name, publisher *string
		var data []byte
		if err := rows.Scan(&trimmed, &seq, &at, &kind, &name, &version, &data, &publisher); err != nil {
			return nil, fmt.Errorf("read change log: %w", err)
		}
		if after < trimmed {
			return nil, api.ErrTrimmed
		}
		if seq == nil {
			break
		}
		out = append(out, api.Change{Seq: *seq, Time: *at, Kind: api.Kind(*kind), Name: *name,
			Version: *version, Data: json.RawMessage(data), Publisher: *publisher})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	if len(out) > 0 {
		if err := s.durable(ctx, out[len(out)-1].Seq); err != nil {
			return nil, fmt.Errorf("read change log: %w", err)
		}
	}
	s.tail.addRead(out, gen)
	return out, nil
}

// committed takes a group's changes, once committed, into the tail.
func (s *Store) committed(changes []*api.Change) {
	cs := make([]api.Change, len(changes))
	for i, c := range changes {
		cs[i] = *c
	}
	s.tail.add(cs, cs[len(cs)-1].Seq)
}

// unavailable turns an error that is not the database's answer to the
// query (the server is down, unreachable, starting, shutting down or out
// of connections; the connection broke) into UNAVAILABLE, so that clients
// are told to retry rather than that the server failed.
func unavailable(err *error) {
	var pgErr *pgconn.PgError
	var apiErr *api.Error
	switch {
	case errors.As(*err, &pgErr):
		if !serverUnavailable(pgErr.Code) {
			return
		}
	case *err == nil || errors.As(*err, &apiErr) ||
		errors.Is(*err, context.Canceled) || errors.Is(*err, api.ErrTrimmed) || errors.Is(*err, ErrClosed):
		return
	}
	*err = &api.Error{Code: api.CodeUnavailable, Detail: "the database does not answer; retry", Err: *err}
}

// serverUnavailable reports whether a PostgreSQL error code says that the
// server cannot take the query now rather than that the query failed:
// class 08 (connection exception), 53 (insufficient resources: too many
// connections, disk full, out of memory) and 57P (admin or crash shutdown,
// cannot connect now).
func serverUnavailable(code string) bool {
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "57P")
}
