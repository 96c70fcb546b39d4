package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/commit"
)

const (
	// maxAttempts bounds how often a group starts over after a conflict
	// with another instance (a record created meanwhile, a deadlock).
	maxAttempts = 8
	// commitTimeout bounds one group's transaction.
	commitTimeout = 30 * time.Second
)

// request is one caller's atomic batch of writes for the committer.
type request = commit.Request[[]api.Write]

// Write applies the writes atomically, in order, each one change of the log.
func (s *Store) Write(ctx context.Context, writes []api.Write) (_ []api.Change, err error) {
	defer unavailable(&err)
	return s.committer.Do(ctx, writes)
}

// A group's transaction starts with beginWrite and markWriter, in its first
// pipeline. markWriter marks it as the store's, so that the triggers for
// direct SQL writes (migrations/0002) leave its records alone (the store
// logs them itself); makes its commit asynchronous: COMMIT returns, and
// log_head's lock is let go, without waiting for the WAL flush (package
// comment); and has its statements planned once (their arrays of names would
// otherwise make the server plan them anew for every group, about a fifth of
// its CPU per commit). flushWAL, after COMMIT in the same pipeline, then
// waits for that flush outside any lock: it is a transaction of its own (an
// implicit one, ended by the pipeline's Sync) that writes a record to the
// WAL, a logical decoding message that nothing reads (a transaction that
// wrote none commits without waiting for the flush). So its commit record
// comes after the group's, and its synchronous commit returns once the WAL
// up to it is flushed (and, with synchronous replication, on the standbys).
// Groups of every instance wait for their flushes together, which the server
// does in one.
const (
	beginWrite  = "BEGIN"
	markWriter  = "SELECT set_config('switchboard.writer', 'store', true), set_config('synchronous_commit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)"
	commitWrite = "COMMIT"
	flushWAL    = "SELECT " + flushing
	// flushing is the flush as expressions of a SELECT. Where the session's
	// synchronous_commit is off, it waits for the local flush all the same.
	flushing = `pg_logical_emit_message(true, 'switchboard', ''),
		CASE current_setting('synchronous_commit') WHEN 'off' THEN set_config('synchronous_commit', 'local', true) END`
)

// commitGroup runs a group in one transaction, starting over when it conflicts
// with another instance, and answers its requests. A request whose writes
// fail leaves no trace; the others commit. Only the committer's loop calls
// it.
func (s *Store) commitGroup(group []*request) {
	var err error
	var note string
	var listeners int64
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		note, listeners, err = s.tryCommit(ctx, group)
		cancel()
		if err == nil || attempt == maxAttempts || !retryable(err) {
			break
		}
		s.announcer.flush()
		s.log.Debug("write group conflicted, starting over", "attempt", attempt, "err", err)
	}
	for _, r := range group {
		if err != nil {
			r.Fail(fmt.Errorf("commit: %w", err))
			continue
		}
		r.Answer()
	}
	if note != "" {
		// This instance's handlers take it now, the others' once sent.
		s.bus.l.changes(note[1:], false)
	}
	s.announcer.done(note, listeners, s.committer.Waiting() >= len(group))
}

// retryable reports whether a group that failed with err may succeed when
// run again from the start.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505": // serialization failure, deadlock, unique violation
			return true
		}
	}
	return false
}

// tryCommit runs one attempt of a group in two pipelines (round trips) on
// one connection: BEGIN and the locking reads of every record the group
// touches; then, once the writes have run in Go, the record writes, the
// statement that takes positions from log_head and appends to the log
// (appendLog), COMMIT and flushWAL. It returns the text of the group's
// notification, which commitGroup sends once the group is answered, and
// the count of listeners begun that its statement saw (relay.go). So
// log_head's lock is taken by the pipeline's last statement before COMMIT
// and held for no client round trip nor WAL flush: the server runs COMMIT
// as soon as that statement is done, and the commit does not wait for the
// flush. An error in the second pipeline makes the server skip the rest of
// it, COMMIT included, and the attempt rolls back. The group's changes
// reach the tail (and so this instance's readers) only after the flush.
func (s *Store) tryCommit(ctx context.Context, group []*request) (note string, listeners int64, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return "", 0, err
	}
	defer func() { endTx(conn, err) }()

	b := &pgx.Batch{}
	b.Queue(beginWrite)
	b.Queue(markWriter)
	locked := lockRecords(b, group)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return "", 0, fmt.Errorf("lock records: %w", err)
	}
	recs := commit.Records{
		Read:    func(name string) (api.RecordState, error) { return locked[name], nil },
		Check:   checkChange,
		Written: make(map[string]api.RecordState, len(locked)),
	}
	var changes []*api.Change
	for _, r := range group {
		r.Changes, r.Err = recs.Prepare(r.Work)
		for i := range r.Changes {
			changes = append(changes, &r.Changes[i])
		}
	}
	b = &pgx.Batch{}
	flush(b, locked, recs.Written)
	if len(changes) > 0 {
		appendLog(b, changes, &listeners)
	}
	committed := false
	b.Queue(commitWrite).Exec(func(tag pgconn.CommandTag) error {
		if tag.String() != "COMMIT" { // an aborted transaction's COMMIT says ROLLBACK
			return fmt.Errorf("commit: the transaction ended with %s", tag)
		}
		committed = true
		return nil
	})
	if s.beforeFlush == nil {
		b.Queue(flushWAL)
	}
	err = conn.SendBatch(ctx, b).Close()
	if err == nil && s.beforeFlush != nil {
		s.beforeFlush()
		_, err = conn.Exec(ctx, flushWAL)
	}
	if err != nil && committed {
		// Only the flush failed (its connection broke, say): the group is
		// done and visible, and failing it would have its writers retry
		// what is done. Flush on another connection; if that fails too,
		// the writers learn that the outcome is unknown (UNAVAILABLE).
		s.log.Debug("flush after a commit failed, flushing again", "err", err)
		_, err = s.pool.Exec(ctx, flushWAL)
	}
	if err != nil {
		return "", 0, err
	}
	if len(changes) == 0 {
		return "", 0, nil
	}
	s.committed(changes)
	return noteText(changes, maxCarried), listeners, nil
}

// endTx rolls back the transaction that a failed attempt left open and
// gives the connection back to the pool; a connection that cannot roll
// back is closed (the pool destroys a connection left in a transaction).
func endTx(conn *pgxpool.Conn, err error) {
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
			conn.Conn().Close(ctx)
		}
		cancel()
	}
	conn.Release()
}

// maxCarried bounds the changes carried in the text of a notification,
// below NOTIFY's 8000 bytes with room for its header (notify.go).
const maxCarried = 7800

// appendLog queues the statement that takes positions for changes from
// log_head (see the package comment), inserts them and adds their Size to
// the log's running total (migrations/0004). It is the group's last
// statement before COMMIT, in the same pipeline. Once the batch has run,
// Seq and Time of each change are set, and listeners is log_head's count
// of listeners begun (relay.go), as of the lock the statement took.
func appendLog(b *pgx.Batch, changes []*api.Change, listeners *int64) {
	n := int64(len(changes))
	sizes := make([]int64, n)
	var bytes int64
	kinds := make([]string, n)
	names := make([]string, n)
	versions := make([]int64, n)
	data := make([]string, n)
	publishers := make([]string, n)
	for i, c := range changes {
		sizes[i] = c.Size()
		bytes += sizes[i]
		kinds[i], names[i], versions[i], data[i], publishers[i] =
			string(c.Kind), c.Name, c.Version, string(c.Data), c.Publisher
	}
	b.Queue(`
		WITH h AS (
			UPDATE log_head SET seq = seq + $1::bigint, bytes = bytes + $2::bigint, time = greatest(time, clock_timestamp())
			RETURNING seq, time, listeners
		), ins AS (
			INSERT INTO log (seq, time, kind, name, version, data, publisher, size)
			SELECT h.seq - $1::bigint + c.n, h.time, c.kind, c.name, c.version, nullif(c.data, '')::json, c.publisher, c.size
			FROM h, unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bigint[])
				WITH ORDINALITY AS c(kind, name, version, data, publisher, size, n)
		)
		SELECT h.seq, h.time, h.listeners FROM h`,
		n, bytes, kinds, names, versions, data, publishers, sizes).QueryRow(func(row pgx.Row) error {
		var head int64
		var at time.Time
		if err := row.Scan(&head, &at, listeners); err != nil {
			return fmt.Errorf("append to log: %w", err)
		}
		for i, c := range changes {
			c.Seq, c.Time = head-n+1+int64(i), at
		}
		return nil
	})
}

// recordLockClass is the first key of the advisory locks of record names
// (see lockRecords; migrations/0010 takes them for direct SQL writes too).
const recordLockClass = 0x5243 // "RC"

// lockRecords locks and reads every record that the group writes. It
// returns them by name, with Exists set on those that exist; a name that
// does not exist has its tombstone's version (0 if it never existed).
//
// A row lock cannot hold a name that has no row, so every name is first
// locked with a transaction-level advisory lock, in the order of its key
// so that groups of several instances never deadlock on them: the rows
// and tombstones are then read by statements that start after every
// earlier writer of those names committed (READ COMMITTED), and two groups
// can never both continue after the same tombstone. The three statements
// go in one round trip.
func lockRecords(b *pgx.Batch, group []*request) map[string]api.RecordState {
	var names []string
	for _, r := range group {
		for _, w := range r.Work {
			if w.Kind != api.KindEvent {
				names = append(names, w.Name)
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	locked := make(map[string]api.RecordState, len(names))
	if len(names) == 0 {
		return locked
	}
	b.Queue(`
		SELECT pg_advisory_xact_lock($1, k)
		FROM (SELECT DISTINCT hashtext(n) AS k FROM unnest($2::text[]) AS n ORDER BY k) AS keys`,
		recordLockClass, names).Exec(func(pgconn.CommandTag) error { return nil })
	b.Queue(`
		SELECT name, version, data FROM records WHERE name = ANY($1::text[])
		ORDER BY name FOR UPDATE`, names).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var name string
			st := api.RecordState{Exists: true}
			if err := rows.Scan(&name, &st.Version, &st.Data); err != nil {
				return err
			}
			locked[name] = st
		}
		return rows.Err()
	})
	b.Queue(`SELECT name, version FROM record_tombstones WHERE name = ANY($1::text[])`, names).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var name string
				var version int64
				if err := rows.Scan(&name, &version); err != nil {
					return err
				}
				if !locked[name].Exists { // never both; the row wins
					locked[name] = api.RecordState{Version: version}
				}
			}
			return rows.Err()
		})
	return locked
}

// checkChange refuses a change whose data the json column would refuse:
// an event's (which may have none) or a record's new value.
func checkChange(ch api.Change) *api.Error {
	return checkJSON(ch.Data, ch.Kind == api.KindEvent)
}

// flush queues the writes of the records the group wrote, as it left them:
// deletes (which leave a tombstone), updates of locked rows, inserts of
// new names (which remove their tombstone) and tombstones of records
// created and deleted by the group. An insert fails with a unique
// violation, and the attempt starts over, if another transaction created
// the name since the records were locked.
func flush(b *pgx.Batch, locked, written map[string]api.RecordState) {
	var deletes, tombNames, untomb, upNames, upData, inNames, inData []string
	var tombVersions, upVersions, inVersions []int64
	for name, s := range written {
		was := locked[name]
		switch {
		case !s.Exists:
			if was.Exists {
				deletes = append(deletes, name)
			}
			tombNames, tombVersions = append(tombNames, name), append(tombVersions, s.Version)
		case was.Exists:
			upNames, upVersions, upData = append(upNames, name), append(upVersions, s.Version), append(upData, string(s.Data))
		default:
			inNames, inVersions, inData = append(inNames, name), append(inVersions, s.Version), append(inData, string(s.Data))
			if was.Version > 0 {
				untomb = append(untomb, name)
			}
		}
	}
	if len(deletes) > 0 {
		b.Queue(`DELETE FROM records WHERE name = ANY($1::text[])`, deletes)
	}
	if len(tombNames) > 0 {
		b.Queue(`
			INSERT INTO record_tombstones (name, version)
			SELECT name, version FROM unnest($1::text[], $2::bigint[]) AS t(name, version)
			ORDER BY name
			ON CONFLICT (name) DO UPDATE SET version = excluded.version`, tombNames, tombVersions)
	}
	if len(untomb) > 0 {
		b.Queue(`DELETE FROM record_tombstones WHERE name = ANY($1::text[])`, untomb)
	}
	if len(upNames) > 0 {
		b.Queue(`
			UPDATE records r SET version = u.version, data = u.data::json
			FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(name, version, data)
			WHERE r.name = u.name`, upNames, upVersions, upData)
	}
	if len(inNames) > 0 {
		// In name order, so that two groups inserting the same new names
		// wait for each other instead of deadlocking.
		b.Queue(`
			INSERT INTO records (name, version, data)
			SELECT name, version, data::json
			FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(name, version, data)
			ORDER BY name`, inNames, inVersions, inData)
	}
}
