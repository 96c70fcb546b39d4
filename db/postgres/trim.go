package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// trimBatch bounds the changes removed by one transaction, so that Trim
// never holds locks for long.
const trimBatch = 1000

// Trim removes the changes outside o, trimBatch rows per transaction, then
// the streams not updated since o.Before. Log times follow positions (see
// the package comment), and so does the size of what follows a change, so
// the changes to remove are a prefix of the log: each round reads the
// first rows by position and removes those that o says must go.
func (s *Store) Trim(ctx context.Context, o api.TrimOptions) error {
	for {
		n, err := s.trimLog(ctx, o)
		if err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
		if n < trimBatch {
			break
		}
	}
	if o.Before.IsZero() {
		return nil // no stream is older
	}
	return s.trimStreams(ctx, o.Before)
}

// trimLog removes up to trimBatch of the oldest changes outside o, and
// moves the trimmed position past them in the same transaction, so that a
// reader sees both or neither. It returns how many it removed.
//
// The log's size is the difference of two running totals (see
// migrations/0004), read without waiting for writers; a row goes when it
// is too old or when it and the rows after it add up to more than
// o.MaxBytes. Only the rows of one batch are read. Two instances trimming
// at once remove each row once: DELETE ... RETURNING reports only the rows
// this transaction removed, and only their sizes are counted.
//
// log_head and log_trimmed are read as one row each (LIMIT 1): the
// planner's estimate of log_head, whose row is rewritten by every write,
// grows with its dead versions, and joined with the batch it once made
// the statement cost enough for JIT compilation, which took seconds of
// Postgres CPU per trim (every 5 s on every instance). JIT is off for the
// transaction as well.
func (s *Store) trimLog(ctx context.Context, o api.TrimOptions) (int64, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL jit = off"})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var n, bytes int64
	var last *int64
	err = tx.QueryRow(ctx, `
		WITH first AS (
			SELECT seq, time, sum(size) OVER (ORDER BY seq) - size AS before
			FROM (SELECT seq, time, size FROM log ORDER BY seq LIMIT $3) f
		), old AS (
			SELECT first.seq FROM first, (SELECT bytes FROM log_head LIMIT 1) h, (SELECT bytes FROM log_trimmed LIMIT 1) t
			WHERE first.time < $1 OR ($2 > 0 AND h.bytes - t.bytes - first.before > $2)
		), gone AS (
			DELETE FROM log WHERE seq IN (SELECT seq FROM old) RETURNING seq, size
		)
		SELECT count(*), max(seq), coalesce(sum(size), 0) FROM gone`,
		o.Before, o.MaxBytes, trimBatch).Scan(&n, &last, &bytes)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	// Every instance's tail forgets what is gone (notify.go).
	_, err = tx.Exec(ctx, `
		WITH t AS (UPDATE log_trimmed SET seq = greatest(seq, $1), bytes = bytes + $2 RETURNING seq)
		SELECT pg_notify($3, '=t' || seq) FROM t`, *last, bytes, channel(api.TopicChanges))
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	s.tail.trim(*last)
	return n, nil
}

// trimStreams removes the streams not updated since before, and their
// subscriptions with them (ON DELETE CASCADE). The condition is checked
// again on the row to delete: a stream changed meanwhile, whose row lock
// the DELETE waited for, stays.
func (s *Store) trimStreams(ctx context.Context, before time.Time) error {
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM streams WHERE updated < $1 AND id IN (
				SELECT id FROM streams WHERE updated < $1 LIMIT $2)`, before, trimBatch)
		if err != nil {
			return fmt.Errorf("trim streams: %w", err)
		}
		if tag.RowsAffected() < trimBatch {
			return nil
		}
	}
}
