package embedded_test

import (
	"testing"

	"github.com/switchboard-dev/switchboard/db/dbtest"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// TestBusConformance runs the api.Bus conformance suite against a new
// in-process Bus for every subtest: a single instance, with no connection
// to lose.
func TestBusConformance(t *testing.T) {
	dbtest.RunBus(t, func(t *testing.T) dbtest.BusFixture {
		return dbtest.BusFixture{Bus: embedded.NewBus()}
	})
}
