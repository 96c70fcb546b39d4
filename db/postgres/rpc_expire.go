package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// Expire ends the leases that ran out, announces what they changed and
// deletes what is past its time: one transaction. Rows that another
// transaction holds are skipped: an answer under way decides them, and
// the next Expire (every instance runs one at least every ack timeout)
// takes what is left.
func (q *RPCQueue) Expire(ctx context.Context, now time.Time) (time.Time, error) {
	var next *time.Time
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		wakes, err := endLeases(ctx, tx, now)
		if err != nil {
			return err
		}
		if err := notifyRPC(ctx, tx, wakes); err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `
			WITH past AS (
				DELETE FROM rpc_requests WHERE id IN (
					SELECT id FROM rpc_requests WHERE deadline < $1 FOR UPDATE SKIP LOCKED
				)
			), ended AS (
				DELETE FROM rpc_providers WHERE (name, provider) IN (
					SELECT name, provider FROM rpc_providers WHERE until < $1 FOR UPDATE SKIP LOCKED
				)
			)
			SELECT min(lease_until) FROM rpc_requests WHERE state = 'claimed' AND lease_until > $1`,
			now).Scan(&next)
		if err != nil {
			return fmt.Errorf("delete past rpc requests and registrations: %w", err)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("expire rpc requests: %w", err)
	}
	if next == nil {
		return time.Time{}, nil
	}
	return *next, nil
}

// endLeasesSQL ends the claims whose lease ended at or before $1, in one
// statement: ended locks them, skipping rows that another transaction
// holds; outcome decides each by the rule of a reject: done with $3
// (NO_RPC_PROVIDER) when no provider that has not had it is left, since
// nobody could ever answer it; else done with $2 (RPC_TIMEOUT) once
// max_attempts leases ran out, and pending again before.
var endLeasesSQL = `
	WITH ended AS (
		SELECT id, name, expired + 1 >= max_attempts AS spent FROM rpc_requests
		WHERE state = 'claimed' AND lease_until <= $1::timestamptz
		FOR UPDATE SKIP LOCKED
	), outcome AS (
		SELECT e.id, e.spent, ` + providerLeftSQL("e", "$1::timestamptz") + ` AS left_
		FROM ended e
	), decided AS (
		SELECT id, NOT spent AND left_ AS requeue, CASE WHEN NOT left_ THEN $3::text WHEN spent THEN $2::text END AS code
		FROM outcome
	)
	UPDATE rpc_requests r
	SET expired = r.expired + 1,
		state = CASE WHEN o.requeue THEN 'pending' ELSE 'done' END,
		result_code = o.code,
		claim = NULL, provider = NULL, lease = NULL, lease_until = NULL
	FROM decided o
	WHERE r.id = o.id
	RETURNING r.id, r.name, NOT o.requeue`

// endLeases ends the claims whose lease ended at or before now (see
// endLeasesSQL). It returns the announcements: each done request's id,
// each name once.
func endLeases(ctx context.Context, tx pgx.Tx, now time.Time) ([]api.RPCWake, error) {
	rows, err := tx.Query(ctx, endLeasesSQL, now, string(api.CodeRPCTimeout), string(api.CodeNoRPCProvider))
	if err != nil {
		return nil, fmt.Errorf("end leases: %w", err)
	}
	var wakes []api.RPCWake
	var id, name string
	var done bool
	_, err = pgx.ForEachRow(rows, []any{&id, &name, &done}, func() error {
		w := api.RPCWake{Name: name}
		if done {
			w = api.RPCWake{ID: id}
		}
		if !slices.Contains(wakes, w) {
			wakes = append(wakes, w)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("end leases: %w", err)
	}
	return wakes, nil
}

// notifyRPC announces wakes on api.TopicRPC, in order, when tx commits.
func notifyRPC(ctx context.Context, tx pgx.Tx, wakes []api.RPCWake) error {
	if len(wakes) == 0 {
		return nil
	}
	payloads := make([]string, len(wakes))
	for i, w := range wakes {
		payloads[i] = encodePayload(w.Payload())
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS u(p, i) ORDER BY i`,
		channel(api.TopicRPC), payloads)
	if err != nil {
		return fmt.Errorf("notify %s: %w", api.TopicRPC, err)
	}
	return nil
}
