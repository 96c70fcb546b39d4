package postgres

import (
	"context"
	"fmt"

	"github.com/switchboard-dev/switchboard/api"
)

// ListData returns a page of the records under prefix after the cursor,
// with their data, in byte order of names (the column's collation is C),
// and the log's head that the page is as of.
func (s *Store) ListData(ctx context.Context, prefix, after string, limit int) (_ int64, _ []api.Record, err error) {
	defer unavailable(&err)
	return s.page(ctx, true, prefix, after, limit)
}

// The statements of List and ListData: the log's head, whether changes
// after the tail's head ($5) touched the names after the cursor under the
// prefix (headTouching), and a page of records, with their data or
// without (null). One statement reads them, so the page is the records as
// the log up to that head left them (the package comment says why a
// snapshot sees a prefix of the log).
var pageSQL = `
		SELECT h.seq, h.touched, r.name, r.version, %s
		FROM ` + headTouching("$5", `l.name COLLATE "C" >= $1 AND ($2 = '' OR l.name COLLATE "C" < $2) AND l.name COLLATE "C" > $3`) + ` LEFT JOIN LATERAL (
			SELECT name, version, data FROM records
			WHERE name >= $1 AND ($2 = '' OR name < $2) AND name > $3
			ORDER BY name LIMIT $4
		) r ON true
		ORDER BY r.name`

var (
	listPage     = fmt.Sprintf(pageSQL, "null::json")
	listDataPage = fmt.Sprintf(pageSQL, "r.data")
)

// page runs listDataPage (withData) or listPage, and answers once what it
// read is durable (Store.settled); with the data, it answers with the
// head as well, so it waits for the head to be durable.
func (s *Store) page(ctx context.Context, withData bool, prefix, after string, limit int) (int64, []api.Record, error) {
	sql := listPage
	if withData {
		sql = listDataPage
	}
	d := s.tail.current()
	rows, err := s.pool.Query(ctx, sql, prefix, prefixEnd(prefix), after, limit, d)
	if err != nil {
		return 0, nil, fmt.Errorf("list records: %w", err)
	}
	defer rows.Close()
	var pos int64
	var touched bool
	var out []api.Record
	for rows.Next() {
		var name *string
		var version *int64
		var rec api.Record
		if err := rows.Scan(&pos, &touched, &name, &version, (*[]byte)(&rec.Data)); err != nil {
			return 0, nil, fmt.Errorf("list records: %w", err)
		}
		if name != nil {
			rec.Name, rec.Version = *name, *version
			out = append(out, rec)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("list records: %w", err)
	}
	if err := s.settled(ctx, pos, d, touched || withData); err != nil {
		return 0, nil, fmt.Errorf("list records: %w", err)
	}
	return pos, out, nil
}
