package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// execSQL runs statements on the database at url as another program would.
func execSQL(t *testing.T, url string, sql ...string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	for _, q := range sql {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// Rows inserted, updated, renamed and deleted with plain SQL get versions
// and log entries like the store's writes, and wake the subscribers.
func TestDirectSQLWrites(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := open(t, url)
	got := subscribe(t, s.Bus(), api.TopicChanges)
	first, err := s.Write(t.Context(), []api.Write{set("doc", `{"by":"store"}`)})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}

	execSQL(t, url, `UPDATE records SET data = '{"by": "sql"}' WHERE name = 'doc'`)
	got.until(t, []byte(itoa(first[0].Seq+1)))
	execSQL(t, url,
		`INSERT INTO records (name, version, data) VALUES ('new', 0, '[1, 2]')`,
		`UPDATE records SET name = 'renamed' WHERE name = 'new'`,
		`DELETE FROM records WHERE name = 'doc'`,
	)
	if _, err := s.Write(t.Context(), []api.Write{set("renamed", `3`)}); err != nil {
		t.Fatalf("Write after direct writes: %v", err)
	}

	cs, err := s.Changes(t.Context(), first[0].Seq, 100)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	want := []struct {
		kind    api.Kind
		name    string
		version int64
		data    string
	}{
		{api.KindSet, "doc", 2, `{"by": "sql"}`},
		{api.KindSet, "new", 1, `[1, 2]`},
		{api.KindDelete, "new", 2, ``},
		{api.KindSet, "renamed", 1, `[1, 2]`},
		{api.KindDelete, "doc", 3, ``},
		{api.KindSet, "renamed", 2, `3`},
	}
	if len(cs) != len(want) {
		t.Fatalf("the log after the store's first write:%s\nwant %d changes", brief(cs), len(want))
	}
	for i, w := range want {
		c := cs[i]
		if c.Seq != first[0].Seq+int64(i)+1 || c.Kind != w.kind || c.Name != w.name || c.Version != w.version || string(c.Data) != w.data {
			t.Errorf("change %d = {%d %s %q v%d %s}, want {%d %s %q v%d %s}", i,
				c.Seq, c.Kind, c.Name, c.Version, c.Data, first[0].Seq+int64(i)+1, w.kind, w.name, w.version, w.data)
		}
	}
	if r, err := s.Get(t.Context(), "renamed"); err != nil || r.Version != 2 {
		t.Errorf("Get(renamed) = v%d, %v; want v2", r.Version, err)
	}
}

// Direct SQL updates racing the store's read-modify-writes on one record
// lose nothing, and the log keeps its versions in order.
func TestDirectSQLRacesStore(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := open(t, url)
	if _, err := s.Write(t.Context(), []api.Write{set("n", `0`)}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	const each = 100
	var wg sync.WaitGroup
	wg.Go(func() {
		for range each {
			if _, err := s.Write(t.Context(), []api.Write{counter("n")}); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Errorf("connect: %v", err)
			return
		}
		defer conn.Close(context.Background())
		for range each {
			if _, err := conn.Exec(t.Context(), `UPDATE records SET data = to_json(data::text::int + 1) WHERE name = 'n'`); err != nil {
				t.Errorf("update: %v", err)
				return
			}
		}
	})
	wg.Wait()
	r, err := s.Get(t.Context(), "n")
	if err != nil || r.Version != 2*each+1 || string(r.Data) != fmt.Sprint(2*each) {
		t.Fatalf("Get(n) = v%d %s, %v; want v%d %d", r.Version, r.Data, err, 2*each+1, 2*each)
	}
	cs, err := s.Changes(t.Context(), 0, 1000)
	if err != nil || len(cs) != 2*each+1 {
		t.Fatalf("Changes = %d changes, %v; want %d", len(cs), err, 2*each+1)
	}
	for i, c := range cs {
		if c.Seq != int64(i+1) || c.Version != int64(i+1) || string(c.Data) != fmt.Sprint(i) {
			t.Fatalf("change %d = {%d v%d %s}, want {%d v%d %d}", i, c.Seq, c.Version, c.Data, i+1, i+1, i)
		}
	}
}

func brief(cs []api.Change) string {
	var out string
	for _, c := range cs {
		out += fmt.Sprintf("\n  %d %s %q v%d %s", c.Seq, c.Kind, c.Name, c.Version, c.Data)
	}
	return out
}
