package postgres

import (
	"context"
	"fmt"

	"github.com/switchboard-dev/switchboard/api"
)

// ListData returns a page of the records under prefix after the cursor,
// with their data, in byte order of names (the column's collation is C).
// One statement reads the log's head and the page, so the page is the
// records as the log up to that head left them (the package comment says
// why a snapshot sees a prefix of the log).
func (s *Store) ListData(ctx context.Context, prefix, after string, limit int) (_ int64, _ []api.Record, err error) {
	defer unavailable(&err)
	rows, err := s.pool.Query(ctx, `
		SELECT h.seq, r.name, r.version, r.data
		FROM (SELECT seq FROM log_head LIMIT 1) h LEFT JOIN LATERAL (
			SELECT name, version, data FROM records
			WHERE name >= $1 AND ($2 = '' OR name < $2) AND name > $3
			ORDER BY name LIMIT $4
		) r ON true
		ORDER BY r.name`, prefix, prefixEnd(prefix), after, limit)
	if err != nil {
		return 0, nil, fmt.Errorf("list records with data: %w", err)
	}
	defer rows.Close()
	var pos int64
	var out []api.Record
	for rows.Next() {
		var name *string
		var version *int64
		var rec api.Record
		if err := rows.Scan(&pos, &name, &version, (*[]byte)(&rec.Data)); err != nil {
			return 0, nil, fmt.Errorf("list records with data: %w", err)
		}
		if name != nil {
			rec.Name, rec.Version = *name, *version
			out = append(out, rec)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("list records with data: %w", err)
	}
	return pos, out, nil
}
