package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// ListData returns a page of the records under prefix after the cursor,
// with their data, in byte order of names (the column's collation is C).
// One statement reads the page, so the page is one MVCC snapshot.
func (s *Store) ListData(ctx context.Context, prefix, after string, limit int) (_ []api.Record, err error) {
	defer unavailable(&err)
	rows, err := s.pool.Query(ctx, `
		SELECT name, version, data FROM records
		WHERE name >= $1 AND ($2 = '' OR name < $2) AND name > $3
		ORDER BY name LIMIT $4`, prefix, prefixEnd(prefix), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list records with data: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Record, error) {
		var rec api.Record
		err := r.Scan(&rec.Name, &rec.Version, (*[]byte)(&rec.Data))
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("list records with data: %w", err)
	}
	return out, nil
}
