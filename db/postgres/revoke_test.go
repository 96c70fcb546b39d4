package postgres_test

import (
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// Migration 0007 adds the revocations and their counter, and its Down
// removes them; applied again, revoking works.
func TestMigrateRevocations(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := open(t, url) // migrates to the last version
	until := time.Now().Add(time.Hour)
	if err := s.Revoke(t.Context(), "tok", until); err != nil {
		t.Fatal(err)
	}
	p := migrator(t, url)
	if _, err := p.DownTo(t.Context(), 6); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revocations(t.Context(), 0, 10); err == nil {
		t.Fatal("the revocations are still there after Down")
	}
	if _, err := p.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(t.Context(), "again", until); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Revocations(t.Context(), 0, 10)
	if err != nil || len(rs) != 1 || rs[0].JTI != "again" || rs[0].Seq != 1 {
		t.Errorf("after Down and Up, revocations = %+v, %v; want again at position 1", rs, err)
	}
}
