package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// logSizes reads the log's size as the running totals say, and as its
// rows add up.
func logSizes(t *testing.T, url string) (totals, rows int64) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(t.Context())
	err = conn.QueryRow(t.Context(), `
		SELECT h.bytes - t.bytes, (SELECT coalesce(sum(size), 0) FROM log)
		FROM log_head h, log_trimmed t`).Scan(&totals, &rows)
	if err != nil {
		t.Fatalf("read the log's size: %v", err)
	}
	return totals, rows
}

// The running totals of the log's size agree with its rows after the
// store's writes, direct SQL writes (renames and deletes too) and trims,
// and every row counts what api.Change.Size says of its change.
func TestLogSize(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := open(t, url)
	if _, err := s.Write(t.Context(), []api.Write{
		set("doc", `{"by":"store"}`),
		{Kind: api.KindEvent, Name: "e", Data: []byte(`"é"`), Publisher: "alice"},
		{Kind: api.KindEvent, Name: "e"},
	}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	execSQL(t, url,
		`UPDATE records SET data = '{"by": "sql"}' WHERE name = 'doc'`,
		`INSERT INTO records (name, version, data) VALUES ('new', 0, '[1, 2]')`,
		`UPDATE records SET name = 'renamed' WHERE name = 'new'`,
		`DELETE FROM records WHERE name = 'doc'`,
	)
	if _, err := s.Write(t.Context(), []api.Write{{Kind: api.KindDelete, Name: "renamed"}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	log, err := s.Changes(t.Context(), 0, 100)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	var want int64
	for _, c := range log {
		want += c.Size()
	}
	if totals, rows := logSizes(t, url); totals != want || rows != want {
		t.Fatalf("the log's size: totals %d, rows %d; want %d, the Size of its %d changes", totals, rows, want, len(log))
	}

	if err := s.Trim(t.Context(), api.TrimOptions{MaxBytes: want - 1}); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	want -= log[0].Size()
	if totals, rows := logSizes(t, url); totals != want || rows != want {
		t.Errorf("the log's size after a Trim: totals %d, rows %d; want %d", totals, rows, want)
	}
}
