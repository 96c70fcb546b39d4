package postgres

import (
	"context"
	"fmt"
	"time"
)

// Presence is the presence table (migrations/0008): a row per (instance,
// user) with its expiry. Each instance writes its own rows only, from one
// writer, so writers never wait on each other's row locks; readers see
// every instance's rows.

// PutPresence creates or renews the rows of instance for users, in id
// order (one lock order for every statement that takes the same rows).
func (s *Store) PutPresence(ctx context.Context, instance string, users []string, expires time.Time) (err error) {
	defer unavailable(&err)
	if len(users) == 0 {
		return nil
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO presence (user_id, instance, expires)
		SELECT u, $1, $3 FROM (SELECT DISTINCT u FROM unnest($2::text[]) AS u) AS d ORDER BY u COLLATE "C"
		ON CONFLICT (user_id, instance) DO UPDATE SET expires = excluded.expires`,
		instance, users, expires)
	if err != nil {
		return fmt.Errorf("put presence of instance %s: %w", instance, err)
	}
	return nil
}

// RemovePresence removes the rows of instance for users.
func (s *Store) RemovePresence(ctx context.Context, instance string, users []string) (err error) {
	defer unavailable(&err)
	if len(users) == 0 {
		return nil
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM presence WHERE instance = $1 AND user_id = ANY($2::text[])`, instance, users)
	if err != nil {
		return fmt.Errorf("remove presence of instance %s: %w", instance, err)
	}
	return nil
}

// Online returns the users with a row expiring after now, in id order.
func (s *Store) Online(ctx context.Context, now time.Time, users []string) (_ []string, err error) {
	defer unavailable(&err)
	q := `SELECT DISTINCT user_id FROM presence WHERE expires > $1 ORDER BY user_id`
	args := []any{now}
	if users != nil {
		q = `SELECT DISTINCT user_id FROM presence WHERE expires > $1 AND user_id = ANY($2::text[]) ORDER BY user_id`
		args = append(args, users)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	return out, nil
}

// ExpirePresence removes the rows that expire at or before now.
func (s *Store) ExpirePresence(ctx context.Context, now time.Time) (err error) {
	defer unavailable(&err)
	if _, err = s.pool.Exec(ctx, `DELETE FROM presence WHERE expires <= $1`, now); err != nil {
		return fmt.Errorf("expire presence: %w", err)
	}
	return nil
}
