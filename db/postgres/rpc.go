package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/api"
)

var _ api.RPCQueue = (*RPCQueue)(nil)

// RPCQueue is the api.RPCQueue in the rpc_* tables (migrations/0003_rpc.sql),
// shared by every instance on the database: a requester on one instance
// and a provider on another meet here.
//
// Claims take the oldest pending requests with FOR UPDATE SKIP LOCKED, so
// providers on many instances claiming at once never take the same request
// and never wait for each other. Every change that someone waits for is
// announced on api.TopicRPC with pg_notify inside the transaction that
// makes it, so nothing is announced that did not commit, and an announced
// change is visible to whoever reads after the wake-up.
//
// Each method is one transaction: a single statement (its CTEs included)
// where the change fits in one, which is also one round trip, else an
// explicit transaction. Rows are only ever waited for in one order: Answer
// waits for the row of its own claim alone, and every other row lock is
// taken with SKIP LOCKED or (registrations) in name order, so transactions
// of several instances cannot deadlock.
//
// Times are the caller's: the queue compares the times it is given and
// never reads the database clock. RPCQueue is safe for concurrent use.
type RPCQueue struct {
	pool *pgxpool.Pool
}

// RPC returns the store's RPC queue, which announces on the store's Bus.
func (s *Store) RPC() api.RPCQueue { return &RPCQueue{pool: s.pool} }

// registerSQL registers $2 for the names $1 (sorted and without
// duplicates: rows are locked in that order) until $3, never earlier.
const registerSQL = `
	INSERT INTO rpc_providers (name, provider, until)
	SELECT n, $2, $3 FROM unnest($1::text[]) AS n
	ON CONFLICT (name, provider) DO UPDATE SET until = excluded.until
	WHERE rpc_providers.until < excluded.until`

// Register records provider for names until until, never shortening.
func (q *RPCQueue) Register(ctx context.Context, provider string, names []string, until time.Time) (err error) {
	defer unavailable(&err)
	if _, err := q.pool.Exec(ctx, registerSQL, lockOrder(names), sqlText(provider), until); err != nil {
		return fmt.Errorf("register rpc provider: %w", err)
	}
	return nil
}

// Enqueue adds a pending request, or says NO_RPC_PROVIDER, and announces
// its name: one statement.
func (q *RPCQueue) Enqueue(ctx context.Context, c api.RPCCall, now time.Time) (err error) {
	defer unavailable(&err)
	if err := checkJSON(c.Data, true); err != nil {
		return err
	}
	tag, err := q.pool.Exec(ctx, `
		WITH added AS (
			INSERT INTO rpc_requests (id, name, data, requester, deadline, max_attempts)
			SELECT $1, $2, nullif($3, '')::json, $4, $5, greatest($6, 1)
			WHERE EXISTS (SELECT FROM rpc_providers WHERE name = $2 AND until > $7)
			RETURNING id
		)
		SELECT pg_notify($8, $9) FROM added`,
		sqlText(c.ID), c.Name, string(c.Data), sqlText(c.Requester), c.Deadline, c.MaxAttempts, now,
		channel(api.TopicRPC), encodePayload(api.RPCWake{Name: c.Name}.Payload()))
	if err != nil {
		return fmt.Errorf("enqueue rpc %s: %w", c.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return api.Errorf(api.CodeNoRPCProvider, "no provider for rpc %q", c.Name)
	}
	return nil
}

// claimSQL registers the provider $2 for the names $1 until $3, then
// claims up to $5 of their pending requests that it never had, oldest
// first, whose deadline is after $4: each gets a claim id from $6, in age
// order, and a lease $7 long.
//
// locked walks each name's pending requests in age order (the index
// rpc_requests_pending, so a backlog costs nothing) and locks up to $5 of
// them, skipping those that another transaction holds (another provider
// claiming them, a requester cancelling): claimers never wait for each
// other. picked keeps the oldest $5 of all names. With several names, a
// request can be locked and not picked; a claimer that skipped it
// meanwhile may have gone back to waiting, so its name is announced again
// ($8, $9) once this commits. (The final SELECT reads passed because a
// CTE that changes nothing runs only when read.)
//
// The names come in as (SELECT $1), not $1: a custom plan that sees one
// name looks cheaper than the generic plan, which assumes ten, and
// Postgres would plan the statement afresh for every claim (about 1 ms).
const claimSQL = `
	WITH registered AS (` + registerSQL + `
	), locked AS (
		SELECT r.id, r.seq, r.name
		FROM unnest((SELECT $1::text[])) AS n(name) CROSS JOIN LATERAL (
			SELECT r.id, r.seq, r.name FROM rpc_requests r
			WHERE r.state = 'pending' AND r.name = n.name AND r.deadline > $4::timestamptz
				AND NOT EXISTS (SELECT FROM rpc_tried t WHERE t.request = r.id AND t.provider = $2)
			ORDER BY r.seq
			LIMIT $5
			FOR UPDATE SKIP LOCKED
		) r
	), picked AS (
		SELECT id, seq, row_number() OVER (ORDER BY seq) AS i FROM locked ORDER BY seq LIMIT $5
	), passed AS (
		SELECT pg_notify($8, $9 || name) FROM locked
		WHERE id NOT IN (SELECT id FROM picked)
		GROUP BY name
	), tried AS (
		INSERT INTO rpc_tried (request, provider) SELECT id, $2 FROM picked
	), claimed AS (
		UPDATE rpc_requests r
		SET state = 'claimed', claim = c.claim, provider = $2, lease = $7::interval,
			lease_until = $4::timestamptz + $7::interval
		FROM picked p JOIN unnest($6::text[]) WITH ORDINALITY AS c(claim, i) USING (i)
		WHERE r.id = p.id
		RETURNING r.seq, c.claim, r.name, r.data, r.deadline, r.requester
	)
	SELECT *, (SELECT count(*) FROM passed) FROM claimed`

// Claim registers the provider and hands it the oldest requests it may
// have, each under a new claim id: one statement.
func (q *RPCQueue) Claim(ctx context.Context, c api.RPCClaim, now time.Time) (_ []api.RPCRequest, err error) {
	defer unavailable(&err)
	n := max(c.Max, 1)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newClaimID()
	}
	rows, err := q.pool.Query(ctx, claimSQL, lockOrder(c.Names), sqlText(c.Provider), c.Until, now, n, ids,
		pgtype.Interval{Microseconds: c.Lease.Microseconds(), Valid: true}, channel(api.TopicRPC), wakeNamePrefix)
	if err != nil {
		return nil, fmt.Errorf("claim rpc requests: %w", err)
	}
	type claimed struct {
		seq int64
		api.RPCRequest
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimed, error) {
		var c claimed
		var passed int64
		err := row.Scan(&c.seq, &c.ID, &c.Name, (*[]byte)(&c.Data), &c.Deadline, &c.Requester, &passed)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim rpc requests: %w", err)
	}
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]api.RPCRequest, len(got))
	for i, c := range got {
		out[i] = c.RPCRequest
	}
	return out, nil
}

// answerSQL takes the answer for the live claim $1 at $2 and announces
// what it changed, in one statement:
//
//   - answered locks the request of the claim, if its lease runs at $2:
//     waiting for a transaction that holds the row, whose outcome decides
//     whether the claim is still live;
//   - renewed starts afresh the running leases of the provider's other
//     claims (answering proves it alive), skipping rows that another
//     transaction holds (being answered, expired or cancelled): a renewal
//     never waits, so two answers of one provider, each holding its own
//     row, cannot wait for each other in a cycle;
//   - requeue says whether a reject ($3) can go to a provider of the name
//     registered beyond $2 that has not had the request: providerLeftSQL,
//     by which a lease that ran out is passed on too. It reads
//     (SELECT $3), not $3: a custom plan would fold a false $3 and drop
//     the subquery, which makes every custom plan look cheaper than the
//     generic one, and Postgres would plan the statement afresh for every
//     answer, about 0.3 ms;
//   - settled makes the request pending again (a reject with a provider
//     left) or done with the result ($4 data, $5 code, $6 message);
//
// and the request's name (pending) or id (done) is announced on $7.
var answerSQL = `
	WITH answered AS (
		SELECT id, name, provider FROM rpc_requests
		WHERE claim = $1 AND state = 'claimed' AND lease_until > $2::timestamptz
		FOR UPDATE
	), renewed AS (
		UPDATE rpc_requests SET lease_until = $2::timestamptz + lease
		WHERE id IN (
			SELECT o.id FROM rpc_requests o JOIN answered a ON o.provider = a.provider
			WHERE o.state = 'claimed' AND o.id <> a.id AND o.lease_until > $2::timestamptz
			FOR UPDATE OF o SKIP LOCKED
		)
	), outcome AS (
		SELECT a.id, (SELECT $3::boolean) AND ` + providerLeftSQL("a", "$2::timestamptz") + ` AS requeue
		FROM answered a
	), settled AS (
		UPDATE rpc_requests r
		SET state = CASE WHEN o.requeue THEN 'pending' ELSE 'done' END,
			claim = NULL, provider = NULL, lease = NULL, lease_until = NULL,
			result_data = CASE WHEN NOT o.requeue THEN nullif($4, '')::json END,
			result_code = CASE WHEN NOT o.requeue THEN nullif($5, '') END,
			result_message = CASE WHEN NOT o.requeue THEN $6 END
		FROM outcome o
		WHERE r.id = o.id
		RETURNING r.id, r.name, o.requeue
	)
	SELECT pg_notify($7, CASE WHEN requeue THEN $8 || name ELSE $9 || id END) FROM settled`

// providerLeftSQL is the condition by which a request whose claim ended
// without an answer (a reject, a lease that ran out) goes to another
// provider rather than ending with NO_RPC_PROVIDER: a provider of its name
// that has not had it is registered beyond now. req is a row source with
// the request's id and name; now is a timestamptz expression.
func providerLeftSQL(req, now string) string {
	return `EXISTS (
			SELECT FROM rpc_providers p
			WHERE p.name = ` + req + `.name AND p.until > ` + now + `
				AND NOT EXISTS (SELECT FROM rpc_tried t WHERE t.request = ` + req + `.id AND t.provider = p.provider)
		)`
}

// Answer takes an answer for a live claim, renews the provider's other
// leases and announces what changed: one statement.
func (q *RPCQueue) Answer(ctx context.Context, id string, a api.RPCAnswer, now time.Time) (err error) {
	defer unavailable(&err)
	var res api.RPCResult
	switch {
	case a.Reject: // when no provider is left
		res = api.RPCResult{Code: api.CodeNoRPCProvider}
	case a.Data != nil:
		if err := checkJSON(a.Data, false); err != nil {
			return err
		}
		res = api.RPCResult{Data: a.Data}
	default:
		res = api.RPCResult{Code: api.CodeRPCError, Message: sqlText(a.Error)}
	}
	tag, err := q.pool.Exec(ctx, answerSQL, sqlText(id), now, a.Reject,
		string(res.Data), string(res.Code), res.Message,
		channel(api.TopicRPC), wakeNamePrefix, wakeIDPrefix)
	if err != nil {
		return fmt.Errorf("answer rpc request: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return api.Errorf(api.CodeNotFound, "rpc request %q is unknown, expired or already answered", id)
	}
	return nil
}

// The NOTIFY payloads of api.RPCWake{Name: name} and {ID: id} are these
// prefixes followed by the name or id, which statements that announce a
// row they changed append in SQL (text from Postgres is UTF-8 without
// NUL, which encodePayload sends as it is).
var (
	wakeNamePrefix = strings.TrimSuffix(encodePayload(api.RPCWake{Name: "x"}.Payload()), "x")
	wakeIDPrefix   = strings.TrimSuffix(encodePayload(api.RPCWake{ID: "x"}.Payload()), "x")
)

// Take returns and deletes a done request's result: one statement.
func (q *RPCQueue) Take(ctx context.Context, id string) (_ api.RPCResult, _ bool, err error) {
	defer unavailable(&err)
	var done bool
	var res api.RPCResult
	var code, msg *string
	err = q.pool.QueryRow(ctx, `
		WITH taken AS (
			DELETE FROM rpc_requests WHERE id = $1 AND state = 'done'
			RETURNING result_data, result_code, result_message
		)
		SELECT true, result_data, result_code, result_message FROM taken
		UNION ALL
		SELECT false, NULL, NULL, NULL FROM rpc_requests
		WHERE id = $1 AND NOT EXISTS (SELECT FROM taken)`, sqlText(id)).
		Scan(&done, (*[]byte)(&res.Data), &code, &msg)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return api.RPCResult{}, false, api.Errorf(api.CodeNotFound, "rpc request %q does not exist", id)
	case err != nil:
		return api.RPCResult{}, false, fmt.Errorf("take rpc result %s: %w", id, err)
	case !done:
		return api.RPCResult{}, false, nil
	}
	res.Code, res.Message = api.Code(deref(code)), deref(msg)
	return res, true, nil
}

// Cancel deletes a request in any state: one statement. A claim of it can
// no longer be answered, since the row is gone.
func (q *RPCQueue) Cancel(ctx context.Context, id string) (_ api.RPCResult, _ bool, err error) {
	defer unavailable(&err)
	var state string
	var res api.RPCResult
	var code, msg *string
	err = q.pool.QueryRow(ctx, `
		DELETE FROM rpc_requests WHERE id = $1
		RETURNING state, result_data, result_code, result_message`, sqlText(id)).
		Scan(&state, (*[]byte)(&res.Data), &code, &msg)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return api.RPCResult{}, false, nil
	case err != nil:
		return api.RPCResult{}, false, fmt.Errorf("cancel rpc request %s: %w", id, err)
	case state != "done":
		return api.RPCResult{}, false, nil
	}
	res.Code, res.Message = api.Code(deref(code)), deref(msg)
	return res, true, nil
}

// lockOrder returns names sorted (byte order, as the C collation of the
// name columns) and without duplicates: the order in which registrations
// are locked, so that two claims never wait for each other in a cycle, and
// an upsert never meets a row twice.
func lockOrder(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// sqlText makes s storable as text: Postgres text holds valid UTF-8 and no
// NUL, which Go strings from outside (user ids, provider messages) may
// not. Names are validated upstream and never change here.
func sqlText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// newClaimID returns 128 random bits in hex: unguessable, so only the
// provider that claimed a request can answer it.
func newClaimID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
