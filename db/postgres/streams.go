package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// Streams are a row of streams (user, start, updated) and a row of
// stream_subs per subscription, keyed by the subscription's JSON and
// ordered by seq (migrations/0006). A change of one subscription writes
// its row and the stream's updated time, in one transaction that first
// locks the stream's row: the changes of one stream, from any instance,
// take turns, and each one sees those before it.

// GetStream returns a stored stream, or NOT_FOUND. One statement, so one
// snapshot of the stream and its subscriptions.
func (s *Store) GetStream(ctx context.Context, id string) (_ api.StreamInfo, err error) {
	defer unavailable(&err)
	rows, err := s.pool.Query(ctx, `
		SELECT s."user", s.updated, s.start, u.sub, u.since
		FROM streams s LEFT JOIN stream_subs u ON u.stream = s.id
		WHERE s.id = $1 ORDER BY u.seq`, id)
	if err != nil {
		return api.StreamInfo{}, fmt.Errorf("get stream %s: %w", id, err)
	}
	defer rows.Close()
	info := api.StreamInfo{ID: id, Subs: []api.StreamSub{}}
	found := false
	for rows.Next() {
		var sub []byte
		var since *int64
		if err := rows.Scan(&info.User, &info.Updated, &info.Start, &sub, &since); err != nil {
			return api.StreamInfo{}, fmt.Errorf("get stream %s: %w", id, err)
		}
		found = true
		if sub == nil {
			continue // a stream without subscriptions
		}
		x := api.StreamSub{Since: *since}
		if err := json.Unmarshal(sub, &x.Subscription); err != nil {
			return api.StreamInfo{}, fmt.Errorf("get stream %s: %w", id, err)
		}
		info.Subs = append(info.Subs, x)
	}
	if err := rows.Err(); err != nil {
		return api.StreamInfo{}, fmt.Errorf("get stream %s: %w", id, err)
	}
	if !found {
		return api.StreamInfo{}, api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
	}
	return info, nil
}

// PutStream stores a stream's whole state, replacing what was there.
func (s *Store) PutStream(ctx context.Context, info api.StreamInfo) (err error) {
	defer unavailable(&err)
	subs, since := make([]string, len(info.Subs)), make([]int64, len(info.Subs))
	for i, x := range info.Subs {
		b, err := json.Marshal(x.Subscription)
		if err != nil {
			return fmt.Errorf("put stream %s: %w", info.ID, err)
		}
		subs[i], since[i] = string(b), x.Since
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO streams (id, "user", updated, start) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET "user" = excluded."user", updated = excluded.updated, start = excluded.start`,
		info.ID, info.User, info.Updated, info.Start)
	b.Queue(`DELETE FROM stream_subs WHERE stream = $1`, info.ID)
	// In the list's order (seq follows the rows inserted); of a
	// subscription listed twice, the first.
	b.Queue(`
		INSERT INTO stream_subs (stream, sub, since)
		SELECT $1, u.sub, u.since FROM unnest($2::jsonb[], $3::bigint[]) WITH ORDINALITY AS u (sub, since, n)
		ORDER BY u.n
		ON CONFLICT DO NOTHING`, info.ID, subs, since)
	if _, err := s.streamBatch(ctx, b); err != nil {
		return fmt.Errorf("put stream %s: %w", info.ID, err)
	}
	return nil
}

// AddStreamSub adds a subscription after the stream's others, unless the
// stream has it.
func (s *Store) AddStreamSub(ctx context.Context, id string, sub api.StreamSub, updated time.Time) error {
	return s.changeStream(ctx, id, updated, sub.Subscription, `
		INSERT INTO stream_subs (stream, sub, since)
		SELECT $1, $2::jsonb, $3 WHERE EXISTS (SELECT 1 FROM streams WHERE id = $1)
		ON CONFLICT (stream, sub) DO NOTHING`, sub.Since)
}

// RemoveStreamSub removes a subscription of a stream.
func (s *Store) RemoveStreamSub(ctx context.Context, id string, sub api.Subscription, updated time.Time) error {
	return s.changeStream(ctx, id, updated, sub, `DELETE FROM stream_subs WHERE stream = $1 AND sub = $2::jsonb`)
}

// TouchStream sets when a stream was last updated.
func (s *Store) TouchStream(ctx context.Context, id string, updated time.Time) error {
	return s.changeStream(ctx, id, updated, api.Subscription{}, "")
}

// SetStreamSince sets the Since of a subscription of a stream. One
// statement: a removal that comes first leaves it nothing to change.
func (s *Store) SetStreamSince(ctx context.Context, id string, sub api.StreamSub) (err error) {
	defer unavailable(&err)
	x, err := json.Marshal(sub.Subscription)
	if err != nil {
		return fmt.Errorf("change stream %s: %w", id, err)
	}
	var exists bool
	err = s.pool.QueryRow(ctx, `
		WITH u AS (UPDATE stream_subs SET since = $3 WHERE stream = $1 AND sub = $2::jsonb)
		SELECT EXISTS (SELECT 1 FROM streams WHERE id = $1)`, id, string(x), sub.Since).Scan(&exists)
	if err != nil {
		return fmt.Errorf("change stream %s: %w", id, err)
	}
	if !exists {
		return api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
	}
	return nil
}

// changeStream sets the stream's updated time, which locks its row, then
// runs change (with the stream's id, sub's JSON and args as parameters;
// none when it is empty), in one transaction. The statements go together
// (one round trip): change runs when the stream is unknown too, and must
// then do nothing.
func (s *Store) changeStream(ctx context.Context, id string, updated time.Time, sub api.Subscription, change string, args ...any) (err error) {
	defer unavailable(&err)
	b := &pgx.Batch{}
	b.Queue(`UPDATE streams SET updated = $2 WHERE id = $1`, id, updated)
	if change != "" {
		x, err := json.Marshal(sub)
		if err != nil {
			return fmt.Errorf("change stream %s: %w", id, err)
		}
		b.Queue(change, append([]any{id, string(x)}, args...)...)
	}
	found, err := s.streamBatch(ctx, b)
	if err != nil {
		return fmt.Errorf("change stream %s: %w", id, err)
	}
	if !found {
		return api.Errorf(api.CodeNotFound, "stream %q does not exist", id)
	}
	return nil
}

// streamBatch runs the statements of b, one after another, in a
// transaction (each one sees what committed before it began, the rows its
// predecessors locked included), and commits when the first one changed a
// row, which it reports.
func (s *Store) streamBatch(ctx context.Context, b *pgx.Batch) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	br := tx.SendBatch(ctx, b)
	found := false
	for i := range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return false, err
		}
		if i == 0 {
			found = tag.RowsAffected() > 0
		}
	}
	if err := br.Close(); err != nil || !found {
		return false, err
	}
	return true, tx.Commit(ctx)
}
