package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Revoked tokens are the rows of revocations (migrations/0007), one per
// jti; their positions come from the single-row counter revocation_head,
// updated in the same statement, so that they follow commit order (as the
// change log's do: see the package comment).

// revokeSQL takes the next position and stores the revocation at it; a jti
// already there keeps the later until and moves to the new position.
const revokeSQL = `
	WITH head AS (UPDATE revocation_head SET seq = seq + 1 RETURNING seq)
	INSERT INTO revocations (jti, seq, until) SELECT $1, seq, $2 FROM head
	ON CONFLICT (jti) DO UPDATE SET seq = excluded.seq, until = greatest(revocations.until, excluded.until)`

// Revoke stores that the token jti is refused until until.
func (s *Store) Revoke(ctx context.Context, jti string, until time.Time) (err error) {
	defer unavailable(&err)
	if err := api.CheckRevocation(jti, until); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, revokeSQL, jti, until); err != nil {
		return fmt.Errorf("revoke a token: %w", err)
	}
	return nil
}

// Revocations returns up to limit revocations after position after.
func (s *Store) Revocations(ctx context.Context, after int64, limit int) (_ []api.Revocation, err error) {
	defer unavailable(&err)
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, jti, until FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	defer rows.Close()
	var out []api.Revocation
	for rows.Next() {
		var r api.Revocation
		if err := rows.Scan(&r.Seq, &r.JTI, &r.Until); err != nil {
			return nil, fmt.Errorf("read revocations: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	return out, nil
}

// TrimRevocations removes the revocations whose until is before before.
func (s *Store) TrimRevocations(ctx context.Context, before time.Time) (err error) {
	defer unavailable(&err)
	if _, err := s.pool.Exec(ctx, `DELETE FROM revocations WHERE until < $1`, before); err != nil {
		return fmt.Errorf("trim revocations: %w", err)
	}
	return nil
}
