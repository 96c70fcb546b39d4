package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-dev/switchboard/api"
)

var _ api.Listening = (*Store)(nil)

// Listening lives in the listen_* tables (migrations/0009_listen.sql).
//
// One decision per name: every choice is re-made by decide, in a
// transaction that first takes a transaction-level advisory lock of the
// name, so two instances deciding the same name take turns and the second
// sees what the first committed. decide reads the name's live demand and
// the live listeners that cover it, locking those listeners FOR KEY SHARE
// until it commits: a listener removed at the same time is either deleted
// before decide reads (and not chosen) or deleted after decide commits (and
// RemoveListener, which looks for its choices after its delete has
// committed, finds the choice and re-makes it).
//
// Every change of demand or of a listener commits first, and only then
// are the choices it concerns read and re-made, in transactions of their
// own. Of two concurrent changes (a name's demand set, a listener added
// under its prefix), each commits its write before it reads the other's
// table, so the one that reads last sees the other's write: SetDemand's
// decision sees the listener, or AddListener finds the demand and
// decides. (Were the write and the reads in one transaction, each could
// read before the other committed, and neither would choose.) A call that
// fails between its write and its decisions leaves a choice that
// ExpireListen repairs.
//
// A decline (DeclineListen) is such a change: it commits, then its name
// is decided again, and decide leaves out the listeners that declined the
// name. Declines are deleted with their listener (a foreign key).
//
// Rows of listeners are locked in id order, by decide and by ExpireListen's
// delete alike, and an instance's renewal changes no key column (which KEY
// SHARE does not block): transactions do not deadlock on them; should the
// database find one anyway, the transaction is run again.

// listenLockClass is the first key of the advisory locks of names (the
// two-key space of advisory locks does not overlap the one-key space that
// goose's migration lock uses).
const listenLockClass = 0x4c53 // "LS"

// maxListenRetries bounds how often a transaction that deadlocked is run
// again.
const maxListenRetries = 5

// SetDemand stores d, then re-makes the choice of its name in a
// transaction of its own: the write has committed when the listeners are
// read (see the package comment on listening).
func (s *Store) SetDemand(ctx context.Context, d api.Demand, expires, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	if d.Count <= 0 {
		_, err = s.pool.Exec(ctx, `DELETE FROM listen_demand WHERE name = $1 AND kind = $2 AND instance = $3`, d.Name, d.Kind, sqlText(d.Instance))
	} else {
		_, err = s.pool.Exec(ctx, `
			INSERT INTO listen_demand (kind, name, instance, count, stream, expires) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name, kind, instance) DO UPDATE SET count = excluded.count, stream = excluded.stream, expires = excluded.expires`,
			d.Kind, d.Name, sqlText(d.Instance), min(d.Count, 2), sqlText(d.Stream), expires)
	}
	if err != nil {
		return nil, fmt.Errorf("set listen demand %s %s: %w", d.Kind, d.Name, err)
	}
	return s.decideAll(ctx, []api.ListenKey{d.ListenKey}, now)
}

// AddListener stores l, then re-makes the choice of every name under its
// prefix in demand, each in a transaction of its own.
func (s *Store) AddListener(ctx context.Context, l api.Listener, expires, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	_, err = s.pool.Exec(ctx, `
		INSERT INTO listen_listeners (id, instance, stream, prefix, expires) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET instance = excluded.instance, stream = excluded.stream, prefix = excluded.prefix, expires = excluded.expires`,
		sqlText(l.ID), sqlText(l.Instance), sqlText(l.Stream), l.Prefix, expires)
	if err != nil {
		return nil, fmt.Errorf("add listener %s: %w", l.Prefix, err)
	}
	keys, err := s.listenKeys(ctx, `
		SELECT DISTINCT kind, name FROM listen_demand
		WHERE name > $1 AND name < $2 AND count > 0 AND expires > $3`,
		l.Prefix, prefixEnd(l.Prefix), now)
	if err != nil {
		return nil, fmt.Errorf("add listener %s: %w", l.Prefix, err)
	}
	return s.decideAll(ctx, keys, now)
}

// RemoveListener deletes the listener, then re-makes the choice of the
// names it had. The delete has committed when they are read: see decide.
func (s *Store) RemoveListener(ctx context.Context, id string, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	if _, err := s.pool.Exec(ctx, `DELETE FROM listen_listeners WHERE id = $1`, sqlText(id)); err != nil {
		return nil, fmt.Errorf("remove listener: %w", err)
	}
	keys, err := s.listenKeys(ctx, `SELECT kind, name FROM listen_choices WHERE listener = $1`, sqlText(id))
	if err != nil {
		return nil, fmt.Errorf("remove listener: %w", err)
	}
	return s.decideAll(ctx, keys, now)
}

// RemoveListenersExcept deletes the listeners of instance not in keep,
// then re-makes the choice of the names they had (after the delete has
// committed, as RemoveListener).
func (s *Store) RemoveListenersExcept(ctx context.Context, instance string, keep []string, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	if keep == nil {
		keep = []string{}
	}
	rows, err := s.pool.Query(ctx, `
		DELETE FROM listen_listeners WHERE id IN (
			SELECT id FROM listen_listeners WHERE instance = $1 AND NOT (id = ANY($2)) ORDER BY id FOR UPDATE)
		RETURNING id`, sqlText(instance), keep)
	if err != nil {
		return nil, fmt.Errorf("remove listeners of %s: %w", instance, err)
	}
	gone, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("remove listeners of %s: %w", instance, err)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	keys, err := s.listenKeys(ctx, `SELECT kind, name FROM listen_choices WHERE listener = ANY($1)`, gone)
	if err != nil {
		return nil, fmt.Errorf("remove listeners of %s: %w", instance, err)
	}
	return s.decideAll(ctx, keys, now)
}

// RenewListen sets the expiry of every row of instance.
func (s *Store) RenewListen(ctx context.Context, instance string, expires time.Time) (err error) {
	defer unavailable(&err)
	b := &pgx.Batch{}
	b.Queue(`UPDATE listen_demand SET expires = $2 WHERE instance = $1`, sqlText(instance), expires)
	b.Queue(`UPDATE listen_listeners SET expires = $2 WHERE instance = $1`, sqlText(instance), expires)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("renew listening of %s: %w", instance, err)
	}
	return nil
}

// ExpireListen deletes the expired rows, then re-makes the choices that
// Choose may not agree with: those of expired demand, those whose
// listener or demand is gone, and names in demand under a listener's
// prefix without a choice.
func (s *Store) ExpireListen(ctx context.Context, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	expired, err := s.listenKeys(ctx, `DELETE FROM listen_demand WHERE expires <= $1 RETURNING kind, name`, now)
	if err != nil {
		return nil, fmt.Errorf("expire listen demand: %w", err)
	}
	_, err = s.pool.Exec(ctx, `
		DELETE FROM listen_listeners WHERE id IN (
			SELECT id FROM listen_listeners WHERE expires <= $1 ORDER BY id FOR UPDATE)`, now)
	if err != nil {
		return nil, fmt.Errorf("expire listeners: %w", err)
	}
	stale, err := s.listenKeys(ctx, `
		SELECT c.kind, c.name FROM listen_choices c
		WHERE NOT EXISTS (SELECT FROM listen_listeners l WHERE l.id = c.listener AND l.expires > $1)
		   OR NOT EXISTS (SELECT FROM listen_demand d WHERE d.name = c.name AND d.kind = c.kind AND d.count > 0 AND d.expires > $1)
		UNION
		SELECT DISTINCT d.kind, d.name FROM listen_demand d
		WHERE d.count > 0 AND d.expires > $1
		  AND NOT EXISTS (SELECT FROM listen_choices c WHERE c.name = d.name AND c.kind = d.kind)
		  AND EXISTS (SELECT FROM listen_listeners l
		              WHERE starts_with(d.name, l.prefix) AND length(l.prefix) < length(d.name) AND l.expires > $1
		                AND NOT EXISTS (SELECT FROM listen_declines x WHERE x.listener = l.id AND x.name = d.name AND x.kind = d.kind))`, now)
	if err != nil {
		return nil, fmt.Errorf("expire listening: %w", err)
	}
	return s.decideAll(ctx, append(expired, stale...), now)
}

// DeclineListen stores the decline, then re-makes the choice of key in a
// transaction of its own (the decline has committed when decide reads the
// declines, as any change). A listener deleted meanwhile declines nothing:
// its removal re-makes its choices.
func (s *Store) DeclineListen(ctx context.Context, key api.ListenKey, listener string, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	_, err = s.pool.Exec(ctx, `
		INSERT INTO listen_declines (listener, kind, name)
		SELECT id, $2, $3 FROM listen_listeners WHERE id = $1
		ON CONFLICT DO NOTHING`, sqlText(listener), key.Kind, key.Name)
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "23503") { // 23503: the listener is gone
		return nil, fmt.Errorf("decline %s %s: %w", key.Kind, key.Name, err)
	}
	return s.decideAll(ctx, []api.ListenKey{key}, now)
}

// ForgetDeclines deletes the declines of instance's listeners, then
// re-makes the choices of their names.
func (s *Store) ForgetDeclines(ctx context.Context, instance string, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	keys, err := s.listenKeys(ctx, `
		DELETE FROM listen_declines
		WHERE listener IN (SELECT id FROM listen_listeners WHERE instance = $1)
		RETURNING kind, name`, sqlText(instance))
	if err != nil {
		return nil, fmt.Errorf("forget the declines of %s: %w", instance, err)
	}
	return s.decideAll(ctx, keys, now)
}

// Chosen returns the choices of instance's listeners.
func (s *Store) Chosen(ctx context.Context, instance string) (_ []api.Choice, err error) {
	defer unavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT kind, name, listener FROM listen_choices WHERE instance = $1`, sqlText(instance))
	if err != nil {
		return nil, fmt.Errorf("read listen choices: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Choice, error) {
		c := api.Choice{Instance: instance}
		return c, r.Scan(&c.Kind, &c.Name, &c.Listener)
	})
	if err != nil {
		return nil, fmt.Errorf("read listen choices: %w", err)
	}
	return out, nil
}

// ListenPrefixes returns the prefixes of the live listeners.
func (s *Store) ListenPrefixes(ctx context.Context, now time.Time) (_ []string, err error) {
	defer unavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT prefix FROM listen_listeners WHERE expires > $1`, now)
	if err != nil {
		return nil, fmt.Errorf("read listen prefixes: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read listen prefixes: %w", err)
	}
	return out, nil
}

// decide re-makes the choice of key in tx, and adds the instances to wake
// to w.
func decide(ctx context.Context, tx pgx.Tx, key api.ListenKey, now time.Time, w wakes) error {
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, listenLockClass, key.Kind+" "+key.Name)
	var cur api.Choice
	had := false
	b.Queue(`SELECT listener, instance FROM listen_choices WHERE name = $1 AND kind = $2`, key.Name, key.Kind).
		QueryRow(func(r pgx.Row) error {
			err := r.Scan(&cur.Listener, &cur.Instance)
			had = err == nil
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	var demand []api.Demand
	b.Queue(`SELECT instance, count, stream FROM listen_demand WHERE name = $1 AND kind = $2 AND expires > $3`, key.Name, key.Kind, now).
		Query(func(rows pgx.Rows) error {
			var d api.Demand
			_, err := pgx.ForEachRow(rows, []any{&d.Instance, &d.Count, &d.Stream}, func() error {
				demand = append(demand, d)
				return nil
			})
			return err
		})
	var listeners []api.Listener
	b.Queue(`
		SELECT id, instance, stream, prefix FROM listen_listeners l
		WHERE starts_with($1, prefix) AND length(prefix) < length($1) AND expires > $2
		  AND NOT EXISTS (SELECT FROM listen_declines x WHERE x.listener = l.id AND x.name = $1 AND x.kind = $3)
		ORDER BY id FOR KEY SHARE OF l`, key.Name, now, key.Kind).
		Query(func(rows pgx.Rows) error {
			var l api.Listener
			_, err := pgx.ForEachRow(rows, []any{&l.ID, &l.Instance, &l.Stream, &l.Prefix}, func() error {
				listeners = append(listeners, l)
				return nil
			})
			return err
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	next, ok := api.Choose(key, cur.Listener, demand, listeners)
	if had == ok && cur.Listener == next.ID {
		return nil
	}
	var err error
	if ok {
		_, err = tx.Exec(ctx, `
			INSERT INTO listen_choices (kind, name, listener, instance) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name, kind) DO UPDATE SET listener = excluded.listener, instance = excluded.instance`,
			key.Kind, key.Name, next.ID, next.Instance)
		w[next.Instance] = true
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM listen_choices WHERE name = $1 AND kind = $2`, key.Name, key.Kind)
	}
	if had {
		w[cur.Instance] = true
	}
	return err
}

// decideAll re-makes the choices of keys, each in a transaction of its
// own (a name's lock is held for one decision only), and returns the
// instances to wake.
func (s *Store) decideAll(ctx context.Context, keys []api.ListenKey, now time.Time) ([]string, error) {
	all := wakes{}
	done := make(map[api.ListenKey]bool, len(keys))
	for _, key := range keys {
		if done[key] {
			continue
		}
		done[key] = true
		w := wakes{}
		err := s.listenTx(ctx, func(tx pgx.Tx) error {
			clear(w)
			return decide(ctx, tx, key, now, w)
		})
		if err != nil {
			return all.list(), fmt.Errorf("choose a listener of %s %s: %w", key.Kind, key.Name, err)
		}
		for i := range w {
			all[i] = true
		}
	}
	return all.list(), nil
}

// listenTx runs fn in a transaction, again when the database found a
// deadlock.
func (s *Store) listenTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		var pgErr *pgconn.PgError
		if err == nil || attempt == maxListenRetries || !errors.As(err, &pgErr) ||
			(pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
	}
}

// listenKeys runs a query of (kind, name) rows.
func (s *Store) listenKeys(ctx context.Context, sql string, args ...any) ([]api.ListenKey, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.ListenKey, error) {
		var k api.ListenKey
		return k, r.Scan(&k.Kind, &k.Name)
	})
}

// wakes is a set of instances to wake.
type wakes map[string]bool

func (w wakes) list() []string {
	out := make([]string, 0, len(w))
	for i := range w {
		out = append(out, i)
	}
	return out
}
