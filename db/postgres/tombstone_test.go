package postgres_test

import (
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// Direct SQL writes keep tombstones as the store does (migrations/0010):
// a row deleted by the store and inserted again by SQL continues after
// the delete's version, and one deleted by SQL and created again by the
// store too.
func TestDirectSQLTombstones(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := open(t, url)
	mustWrite := func(ws ...api.Write) []api.Change {
		t.Helper()
		cs, err := s.Write(t.Context(), ws)
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		return cs
	}
	mustWrite(set("doc", `1`))
	mustWrite(api.Write{Kind: api.KindDelete, Name: "doc"}) // v2
	execSQL(t, url, `INSERT INTO records (name, version, data) VALUES ('doc', 0, '"sql"')`)
	if r, err := s.Get(t.Context(), "doc"); err != nil || r.Version != 3 {
		t.Fatalf("Get(doc) after an SQL insert over a tombstone = v%d, %v; want v3", r.Version, err)
	}
	execSQL(t, url, `DELETE FROM records WHERE name = 'doc'`) // v4
	if c := mustWrite(set("doc", `5`))[0]; c.Version != 5 {
		t.Errorf("the store's create after an SQL delete at v4 has version %d, want 5", c.Version)
	}
	mustWrite(set("a", `1`))
	execSQL(t, url, `UPDATE records SET name = 'b' WHERE name = 'a'`) // a deleted at v2
	if c := mustWrite(set("a", `2`))[0]; c.Version != 3 {
		t.Errorf("the store's create after an SQL rename at v2 has version %d, want 3", c.Version)
	}
}
