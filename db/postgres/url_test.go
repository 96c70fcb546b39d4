package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// TestPoolSettingsInURL: a DATABASE_URL with pool settings also serves the
// listener and the migrations when no direct URL is given.
func TestPoolSettingsInURL(t *testing.T) {
	url := pgtest.NewDatabase(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	s, err := postgres.Open(t.Context(), url+sep+"pool_max_conns=4", "", nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Bus().Ready(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the listener never connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
