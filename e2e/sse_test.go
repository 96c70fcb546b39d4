package e2e

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// frame and sseClient are testkit's: the suites share the stream client.
type (
	frame     = testkit.Frame
	sseClient = testkit.Client
)

// openSSE opens url (relative to the server) as an event stream, with a
// Last-Event-ID when lastID is set, and closes it when the test ends.
func openSSE(t testing.TB, url, lastID string) *sseClient {
	t.Helper()
	c, err := testkit.Dial(url, lastID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
