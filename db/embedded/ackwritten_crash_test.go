package embedded_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAckWritten$", "-test.count=1")
	cmd.Env = append(os.Environ(), ackCrashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int64]string{} // position: event data
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var g, i int
		var seq int64
		if _, err := fmt.Sscanf(lines.Text(), "%d %d %d", &g, &i, &seq); err != nil {
			t.Fatalf("publisher said %q", lines.Text())
		}
		acked[seq] = fmt.Sprintf(`"%d/%d"`, g, i)
		if len(acked) == 5000 {
			cmd.Process.Kill() // what it printed before it died was acknowledged too
		}
	}
	cmd.Wait()
	if len(acked) < 5000 {
		t.Fatalf("the publisher stopped after %d events", len(acked))
	}

	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	defer s.Close()
	log := map[int64]api.Change{}
	for after := int64(0); ; {
		cs, err := s.Changes(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			if c.Seq != after+1 {
				t.Fatalf("the log jumps from %d to %d", after, c.Seq)
			}
			log[c.Seq], after = c, c.Seq
		}
	}
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
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000000 {
				cs, err := s.Write(context.Background(), []api.Write{
					{Kind: api.KindEvent, Name: "e/" + strconv.Itoa(g), Data: json.RawMessage(fmt.Sprintf(`"%d/%d"`, g, i))},
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("%d %d %d\n", g, i, cs[0].Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(1) // not killed: the parent says so
}
