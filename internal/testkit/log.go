package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// LogEntry is one row of the change log.
type LogEntry struct {
	Seq     int64
	Kind    string // set, patch, delete, event
	Name    string
	Version int64
	Data    string // the JSON text; "" for none
}

// sqlTimeout bounds each of these helpers' work on the database.
const sqlTimeout = 30 * time.Second

// ReadLog reads the change log after a position straight from the
// database at url, as another program would.
func ReadLog(t testing.TB, url string, after int64) []LogEntry {
	t.Helper()
	ctx, conn, done := connect(t, url)
	defer done()
	rows, err := conn.Query(ctx, `SELECT seq, kind, name, version, coalesce(data::text, '') FROM log WHERE seq > $1 ORDER BY seq`, after)
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LogEntry])
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	return out
}

// ExecSQL runs statements on the database at url as another program would.
func ExecSQL(t testing.TB, url string, sql ...string) {
	t.Helper()
	ctx, conn, done := connect(t, url)
	defer done()
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// connect opens a connection to the database at url, with the context
// of its work (sqlTimeout from now); done closes it.
func connect(t testing.TB, url string) (ctx context.Context, conn *pgx.Conn, done func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		cancel()
		t.Fatalf("connect: %v", err)
	}
	return ctx, conn, func() { conn.Close(ctx); cancel() }
}
