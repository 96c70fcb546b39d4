package postgres

import (
	"context"
	"fmt"
	"time"
)

// trimBatch bounds the changes removed by one transaction, so that Trim
// never holds locks for long.
const trimBatch = 1000

// Trim removes changes and streams older than before, trimBatch rows per
// transaction. Log times follow positions (see the package comment), so the
// changes older than before are a prefix of the log: each round reads the
// first rows by position and removes those that are old enough.
func (s *Store) Trim(ctx context.Context, before time.Time) error {
	for {
		n, err := s.trimLog(ctx, before)
		if err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
		if n < trimBatch {
			break
		}
	}
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM streams WHERE id IN (
				SELECT id FROM streams WHERE updated < $1 LIMIT $2)`, before, trimBatch)
		if err != nil {
			return fmt.Errorf("trim streams: %w", err)
		}
		if tag.RowsAffected() < trimBatch {
			return nil
		}
	}
}

// trimLog removes up to trimBatch of the oldest changes older than before,
// and moves the trimmed position past them in the same transaction, so that
// a reader sees both or neither. It returns how many it removed.
func (s *Store) trimLog(ctx context.Context, before time.Time) (int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var n int64
	var last *int64
	err = tx.QueryRow(ctx, `
		WITH old AS (
			SELECT seq FROM (SELECT seq, time FROM log ORDER BY seq LIMIT $2) first
			WHERE time < $1
		), gone AS (
			DELETE FROM log WHERE seq IN (SELECT seq FROM old) RETURNING seq
		)
		SELECT count(*), max(seq) FROM gone`, before, trimBatch).Scan(&n, &last)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE log_trimmed SET seq = greatest(seq, $1)`, *last); err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}
