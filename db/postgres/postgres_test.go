package postgres_test

import (
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/dbtest"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens a Store on the database at url, closed when t ends.
func open(t testing.TB, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), url, "", nil)
	return dbtest.Opened(t, s, err)
}

// TestConformance runs the api.Store conformance suite on a database of
// its own for every subtest.
func TestConformance(t *testing.T) {
	dbtest.Run(t, func(t *testing.T) api.Store {
		return open(t, pgtest.NewDatabase(t))
	})
}
