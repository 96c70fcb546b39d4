package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// beginWrite starts a write transaction, marked as the store's so that the
// triggers for direct SQL writes (migrations/0002) leave its records alone:
// the store logs them itself.
const beginWrite = "BEGIN; SET LOCAL switchboard.writer = 'store'"

// errRetry says that a group met another instance's write and must start
// over.
var errRetry = errors.New("a record was created by another transaction")

// commitGroup runs a group in one transaction, starting over when it conflicts
// with another instance, and answers its requests. A request whose writes
// fail leaves no trace; the others commit. Only the committer's loop calls
// it.
func (s *Store) commitGroup(group []*request) {
	var err error
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		err = s.tryCommit(ctx, group)
		cancel()
		if err == nil || attempt == maxAttempts || !retryable(err) {
			break
		}
		s.log.Debug("write group conflicted, starting over", "attempt", attempt, "err", err)
	}
	for _, r := range group {
		if err != nil {
			r.Fail(fmt.Errorf("commit: %w", err))
			continue
		}
		r.Answer()
	}
}

// retryable reports whether a group that failed with err may succeed when
// run again from the start.
func retryable(err error) bool {
	if errors.Is(err, errRetry) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505": // serialization failure, deadlock, unique violation
			return true
		}
	}
	return false
}

// tryCommit runs one attempt of a group: lock and read every record the
// group touches, run the writes in Go, write the records, take positions
// from log_head, append to the log, notify, commit.
func (s *Store) tryCommit(ctx context.Context, group []*request) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginWrite})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	locked, err := lockRecords(ctx, tx, group)
	if err != nil {
		return err
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
	if len(changes) == 0 {
		return tx.Commit(ctx)
	}
	if err := flush(ctx, tx, locked, recs.Written); err != nil {
		return err
	}
	head, err := appendLog(ctx, tx, changes)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel(api.TopicChanges), encodePayload([]byte(strconv.FormatInt(head, 10))))
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return tx.Commit(ctx)
}

// appendLog takes positions for changes from log_head, the group's last
// statement before commit (see the package comment), and inserts them. It
// adds their Size to the log's running total in the same statement
// (migrations/0004), sets Seq and Time of each change and returns the new
// head.
func appendLog(ctx context.Context, tx pgx.Tx, changes []*api.Change) (int64, error) {
	n := int64(len(changes))
	sizes := make([]int64, n)
	var bytes int64
	for i, c := range changes {
		sizes[i] = c.Size()
		bytes += sizes[i]
	}
	var head int64
	var at time.Time
	err := tx.QueryRow(ctx, `
		UPDATE log_head SET seq = seq + $1, bytes = bytes + $2, time = greatest(time, clock_timestamp())
		RETURNING seq, time`, n, bytes).Scan(&head, &at)
	if err != nil {
		return 0, fmt.Errorf("take log positions: %w", err)
	}
	seqs := make([]int64, n)
	kinds := make([]string, n)
	names := make([]string, n)
	versions := make([]int64, n)
	data := make([]string, n)
	publishers := make([]string, n)
	for i, c := range changes {
		c.Seq, c.Time = head-n+1+int64(i), at
		seqs[i], kinds[i], names[i], versions[i], data[i], publishers[i] =
			c.Seq, string(c.Kind), c.Name, c.Version, string(c.Data), c.Publisher
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO log (seq, time, kind, name, version, data, publisher, size)
		SELECT seq, $2, kind, name, version, nullif(data, '')::json, publisher, size
		FROM unnest($1::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bigint[])
			AS c(seq, kind, name, version, data, publisher, size)`,
		seqs, at, kinds, names, versions, data, publishers, sizes)
	if err != nil {
		return 0, fmt.Errorf("append to log: %w", err)
	}
	return head, nil
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
func lockRecords(ctx context.Context, tx pgx.Tx, group []*request) (map[string]api.RecordState, error) {
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
		return locked, nil
	}
	b := &pgx.Batch{}
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
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("lock records: %w", err)
	}
	return locked, nil
}

// checkChange refuses a change whose data the json column would refuse:
// an event's (which may have none) or a record's new value.
func checkChange(ch api.Change) *api.Error {
	return checkJSON(ch.Data, ch.Kind == api.KindEvent)
}

// flush writes the records the group wrote, as it left them: deletes
// (which leave a tombstone), updates of locked rows, inserts of new names
// (which remove their tombstone), which fail the attempt (errRetry) if
// another transaction created the name since the records were locked,
// and tombstones of records created and deleted by the group.
func flush(ctx context.Context, tx pgx.Tx, locked, written map[string]api.RecordState) error {
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
		if _, err := tx.Exec(ctx, `DELETE FROM records WHERE name = ANY($1::text[])`, deletes); err != nil {
			return fmt.Errorf("delete records: %w", err)
		}
	}
	if len(tombNames) > 0 {
		_, err := tx.Exec(ctx, `
			INSERT INTO record_tombstones (name, version)
			SELECT name, version FROM unnest($1::text[], $2::bigint[]) AS t(name, version)
			ORDER BY name
			ON CONFLICT (name) DO UPDATE SET version = excluded.version`, tombNames, tombVersions)
		if err != nil {
			return fmt.Errorf("keep tombstones: %w", err)
		}
	}
	if len(untomb) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM record_tombstones WHERE name = ANY($1::text[])`, untomb); err != nil {
			return fmt.Errorf("remove tombstones: %w", err)
		}
	}
	if len(upNames) > 0 {
		_, err := tx.Exec(ctx, `
			UPDATE records r SET version = u.version, data = u.data::json
			FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(name, version, data)
			WHERE r.name = u.name`, upNames, upVersions, upData)
		if err != nil {
			return fmt.Errorf("update records: %w", err)
		}
	}
	if len(inNames) > 0 {
		// In name order, so that two groups inserting the same new names
		// wait for each other instead of deadlocking.
		tag, err := tx.Exec(ctx, `
			INSERT INTO records (name, version, data)
			SELECT name, version, data::json
			FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(name, version, data)
			ORDER BY name
			ON CONFLICT (name) DO NOTHING`, inNames, inVersions, inData)
		if err != nil {
			return fmt.Errorf("insert records: %w", err)
		}
		if tag.RowsAffected() != int64(len(inNames)) {
			return errRetry
		}
	}
	return nil
}
