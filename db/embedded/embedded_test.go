package embedded_test

import (
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/dbtest"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// TestConformance runs the api.Store conformance suite against a fresh
// store in a temporary directory for every subtest.
func TestConformance(t *testing.T) {
	dbtest.Run(t, opener(embedded.Open))
}

// TestConformanceCheckpoints runs the suite with a checkpoint every three
// changes: reads see changes partly in the bbolt file and partly in
// memory, and checkpoints race the readers.
func TestConformanceCheckpoints(t *testing.T) {
	dbtest.Run(t, opener(func(dir string) (*embedded.Store, error) {
		return embedded.OpenCheckpointEvery(dir, 3)
	}))
}

func opener(open func(dir string) (*embedded.Store, error)) func(t *testing.T) api.Store {
	return func(t *testing.T) api.Store {
		s, err := open(t.TempDir())
		return dbtest.Opened(t, s, err)
	}
}

// TestRPCConformance runs the api.RPCQueue conformance suite against the
// in-memory queue and the in-process Bus.
func TestRPCConformance(t *testing.T) {
	dbtest.RunRPC(t, func(t *testing.T) (api.RPCQueue, api.Bus) {
		bus := embedded.NewBus()
		return embedded.NewRPCQueue(bus), bus
	})
}
