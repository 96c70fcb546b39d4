package server

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestEventAckWrittenNeedsTheEmbeddedStore: EVENT_ACK=written is the
// embedded store's; with Postgres the server refuses to start.
func TestEventAckWrittenNeedsTheEmbeddedStore(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "EVENT_ACK": "written", "DATABASE_URL": "postgres://nowhere.invalid/db"}
	err := Run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "EVENT_ACK") {
		t.Fatalf("error %v does not name EVENT_ACK", err)
	}
}
