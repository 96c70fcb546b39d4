package postgres_test

import (
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// TestListenerReconnects: the listener's first connection is not a
// reconnect; each connection after a lost one is, and is counted once.
func TestListenerReconnects(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := open(t, url)
	bus := s.Bus()
	got := subscribe(t, bus, "wake")
	waitBusReady(t, bus)
	if n := bus.Reconnects(); n != 0 {
		t.Fatalf("Reconnects = %d after the first connection, want 0", n)
	}
	for want := int64(1); want <= 2; want++ {
		terminateListeners(t, url, 1)
		got.until(t, nil) // the wake-up after the reconnect
		deadline := time.Now().Add(10 * time.Second)
		for bus.Reconnects() != want {
			if time.Now().After(deadline) {
				t.Fatalf("Reconnects = %d, want %d", bus.Reconnects(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := bus.Reconnects(); n != 2 {
		t.Errorf("Reconnects = %d after two lost connections, want 2", n)
	}
}
