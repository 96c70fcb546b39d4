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
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// crashDirEnv makes the test binary a writer that never stops: see
// TestCrash.
const crashDirEnv = "EMBEDDED_CRASH_DIR"

// ack is one acknowledged batch of the crashing writer: writer g's i-th
// batch set record r/g to {"i":i} at seq and published event e/g right
// after it.
type ack struct {
	g, i int
	seq  int64
}

// TestCrash kills a process that writes with SIGKILL and opens its
// directory: every batch it acknowledged is there, at the position it
// was given, records are at their last acknowledged version or later, and
// the log has no gap. The writer checkpoints every 500 changes, so the
// kill lands between checkpoints and sometimes in one.
func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashingWriter(dir)
		return
	}
	dir := t.TempDir()
	acks := crashAfter(t, "TestCrash", crashDirEnv, dir, 3000)
	s, log := recoveredLog(t, dir)
	last := map[int]int{}
	for _, a := range acks {
		set, ev := log[a.seq], log[a.seq+1]
		name, data := fmt.Sprintf("r/%d", a.g), fmt.Sprintf(`{"i":%d}`, a.i)
		if set.Name != name || string(set.Data) != data || ev.Name != fmt.Sprintf("e/%d", a.g) || string(ev.Data) != strconv.Itoa(a.i) {
			t.Fatalf("acknowledged batch %d/%d at %d: the log holds %+v, %+v", a.g, a.i, a.seq, set, ev)
		}
		last[a.g] = max(last[a.g], a.i)
	}
	if recs, err := s.List(context.Background(), "", "", 100); err != nil || len(recs) != len(last) {
		t.Errorf("after the crash the records are %+v, %v; want r/0 to r/%d only", recs, err, len(last)-1)
	}
	for g, i := range last {
		rec, err := s.Get(context.Background(), fmt.Sprintf("r/%d", g))
		var got struct{ I int }
		if err != nil || json.Unmarshal(rec.Data, &got) != nil || got.I < i || rec.Version != int64(got.I+1) {
			t.Errorf("record r/%d after the crash = %+v, %v; want at least {\"i\":%d}", g, rec, err, i)
		}
		if _, err := s.GetStream(context.Background(), fmt.Sprintf("s%d", g)); err != nil {
			t.Errorf("stream s%d after the crash: %v", g, err)
		}
	}
	t.Logf("%d acknowledged batches, %d changes recovered", len(acks), len(log))
}

// crashAfter runs the test named test as a child process, with env set to
// dir, reads the "g i seq" line that it prints for each acknowledged
// write, and kills it with SIGKILL after n of them. It returns every line
// read: what the child printed before it died was acknowledged too.
func crashAfter(t *testing.T, test, env, dir string, n int) []ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acks []ack
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var a ack
		if _, err := fmt.Sscanf(lines.Text(), "%d %d %d", &a.g, &a.i, &a.seq); err != nil {
			t.Fatalf("the child said %q", lines.Text())
		}
		acks = append(acks, a)
		if len(acks) == n {
			cmd.Process.Kill()
		}
	}
	cmd.Wait()
	if len(acks) < n {
		t.Fatalf("the child stopped after %d writes", len(acks))
	}
	return acks
}

// recoveredLog opens dir after a crash and returns the store (closed when
// the test ends) and its change log by position, which must have no gap.
func recoveredLog(t *testing.T, dir string) (*embedded.Store, map[int64]api.Change) {
	t.Helper()
	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	log := map[int64]api.Change{}
	for after := int64(0); ; {
		cs, err := s.Changes(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return s, log
		}
		for _, c := range cs {
			if c.Seq != after+1 {
				t.Fatalf("the log jumps from %d to %d", after, c.Seq)
			}
			log[c.Seq], after = c, c.Seq
		}
	}
}

// crashingWriter writes from four goroutines until the process is killed,
// printing each acknowledged batch.
func crashingWriter(dir string) {
	s, err := embedded.OpenCheckpointEvery(dir, 500)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for g := range 4 {
		s.PutStream(context.Background(), api.StreamInfo{ID: fmt.Sprintf("s%d", g), Updated: time.Now()})
	}
	writeUntilKilled(s, 4, 100000, func(g, i int) []api.Write {
		data := json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		return []api.Write{
			{Kind: api.KindSet, Name: fmt.Sprintf("r/%d", g), Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return data, nil }},
			{Kind: api.KindEvent, Name: fmt.Sprintf("e/%d", g), Data: json.RawMessage(strconv.Itoa(i))},
		}
	})
}

// writeUntilKilled writes batch(g, i) for i up to n from each of writers
// goroutines g, printing "g i position" for each acknowledged batch (the
// position of its first change), until the process is killed; it exits
// 1 if it is not, or on an error.
func writeUntilKilled(s *embedded.Store, writers, n int, batch func(g, i int) []api.Write) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range n {
				cs, err := s.Write(context.Background(), batch(g, i))
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
