package embedded_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// ackCrashDirEnv makes the test binary a publisher that never stops: see
// TestCrashAckWritten.
const ackCrashDirEnv = "EMBEDDED_ACK_CRASH_DIR"

// TestCrashAckWritten kills with SIGKILL a process that publishes with
// AckEventsWritten (answered once written, before the fsync) and opens its
// directory: every event it acknowledged is there, at its position, and
// the log has no gap. A killed process loses nothing the system was
// given; only a power loss or a kernel crash can.
func TestCrashAckWritten(t *testing.T) {
	if dir := os.Getenv(ackCrashDirEnv); dir != "" {
		ackWrittenPublisher(dir)
		return
	}
	dir := t.TempDir()
	acked := map[int64]string{} // position: event data
	for _, a := range crashAfter(t, "TestCrashAckWritten", ackCrashDirEnv, dir, 5000) {
		acked[a.seq] = fmt.Sprintf(`"%d/%d"`, a.g, a.i)
	}
	_, log := recoveredLog(t, dir)
	for seq, data := range acked {
		if ch, ok := log[seq]; !ok || ch.Kind != api.KindEvent || string(ch.Data) != data {
			t.Fatalf("acknowledged event %s at %d: the log holds %+v (%v)", data, seq, ch, ok)
		}
	}
	t.Logf("%d acknowledged events, %d changes recovered", len(acked), len(log))
}

// ackWrittenPublisher publishes from eight goroutines until the process is
// killed, printing each acknowledged event.
func ackWrittenPublisher(dir string) {
	s, err := embedded.OpenCheckpointEvery(dir, 500)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s.AckEventsWritten()
	writeUntilKilled(s, 8, 1000000, func(g, i int) []api.Write {
		return []api.Write{{Kind: api.KindEvent, Name: "e/" + strconv.Itoa(g), Data: json.RawMessage(fmt.Sprintf(`"%d/%d"`, g, i))}}
	})
}
