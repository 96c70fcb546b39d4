package postgres_test

import (
	"database/sql"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
	"github.com/switchboard-dev/switchboard/migrations"
)

// migrator returns a goose provider over the database at url.
func migrator(t *testing.T, url string) *goose.Provider {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func queryJSON(t *testing.T, db *sql.DB, q string, args ...any) []api.StreamSub {
	t.Helper()
	var v []byte
	if err := db.QueryRowContext(t.Context(), q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out []api.StreamSub
	if err := json.Unmarshal(v, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Migration 0006 moves the subscriptions of streams stored as one list
// into rows of their own, in order (of one listed twice, the first), and
// its Down puts them back.
func TestMigrateStreamSubs(t *testing.T) {
	url := pgtest.NewDatabase(t)
	p := migrator(t, url)
	if _, err := p.UpTo(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	sub := func(name string, since int64) api.StreamSub {
		return api.StreamSub{Subscription: api.Subscription{Record: name}, Since: since}
	}
	ev := api.StreamSub{Subscription: api.Subscription{Event: "chat/*"}}
	listed := []api.StreamSub{sub("z", 7), ev, sub("a", 0), sub("z", 8)}
	want := listed[:3]
	raw, _ := json.Marshal(listed)
	execSQL(t, url,
		`INSERT INTO streams (id, "user", subs, updated, start) VALUES ('s', 'u', '`+string(raw)+`', now(), 4)`,
		`INSERT INTO streams (id, "user", subs, updated) VALUES ('empty', 'u', '[]', now())`)

	s := open(t, url) // migrates to the last version
	ctx := t.Context()
	got, err := s.GetStream(ctx, "s")
	if err != nil || got.User != "u" || got.Start != 4 || !slices.Equal(got.Subs, want) {
		t.Fatalf("after the migration GetStream = %+v, %v; want subscriptions %+v", got, err, want)
	}
	if got, err := s.GetStream(ctx, "empty"); err != nil || len(got.Subs) != 0 {
		t.Fatalf("after the migration the empty stream is %+v, %v", got, err)
	}
	if err := s.AddStreamSub(ctx, "s", sub("b", 9), time.Now()); err != nil {
		t.Fatal(err)
	}
	want = append(slices.Clone(want), sub("b", 9))
	if got, err := s.GetStream(ctx, "s"); err != nil || !slices.Equal(got.Subs, want) {
		t.Fatalf("an added subscription does not come last: %+v, %v; want %+v", got.Subs, err, want)
	}

	if _, err := p.DownTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if back := queryJSON(t, db, `SELECT subs FROM streams WHERE id = 's'`); !slices.Equal(back, want) {
		t.Errorf("after Down streams.subs = %+v, want %+v", back, want)
	}
	if back := queryJSON(t, db, `SELECT subs FROM streams WHERE id = 'empty'`); len(back) != 0 {
		t.Errorf("after Down the empty stream has %+v", back)
	}
}
