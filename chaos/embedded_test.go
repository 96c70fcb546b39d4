package chaos

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// embEnv is the environment of an instance on the embedded store in dir.
func embEnv(dir string, kv ...string) map[string]string {
	env := map[string]string{"DATA_DIR": dir, "AUTH_MODE": "open"}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// written is a record written once, as acknowledged.
type written struct {
	Name    string
	Version int64
	Data    string
}

// writeUnique writes records d/<from>... with payloads of size bytes from
// writers goroutines until n are acknowledged or one is refused (then
// each writer stops); it returns what was acknowledged and the first
// refusal.
func writeUnique(base string, from, n, size, writers int) ([]written, answer) {
	var mu sync.Mutex
	var acked []written
	var refusal answer
	next := from
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= from+n || refusal.Status != 0 || refusal.Err != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				name := fmt.Sprintf("d/%d", i)
				data := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", size))
				a := send(http.MethodPut, base+"/records/"+name, data)
				mu.Lock()
				if a.Status/100 == 2 {
					var r struct{ Version int64 }
					json.Unmarshal(a.Body, &r)
					acked = append(acked, written{name, r.Version, data})
				} else if refusal.Status == 0 && refusal.Err == nil {
					refusal = a
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked, refusal
}

// checkKept reads every acknowledged record back: each at its version with
// its data.
func checkKept(t *testing.T, base string, acked []written) {
	t.Helper()
	if lost, first := countLost(base, acked); lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost; the first: %s", lost, len(acked), first)
	}
}

// countLost reads every acknowledged record back and counts those that
// are not at their version with their data.
func countLost(base string, acked []written) (lost int, first string) {

	for _, w := range acked {
		a := send(http.MethodGet, base+"/records/"+w.Name, "")
		var r struct {
			Version int64
			Data    json.RawMessage
		}
		json.Unmarshal(a.Body, &r)
		if a.Status != http.StatusOK || r.Version != w.Version || !jsonEqual(string(r.Data), w.Data) {
			if lost++; lost == 1 {
				first = fmt.Sprintf("%s v%d: %.200s", w.Name, w.Version, a)
			}
		}
	}
	return lost, first
}

// TestEmbeddedSecondProcess starts a second process on the DATA_DIR of a
// running one: it exits 1, saying that another server holds the
// directory, and the first goes on serving.
func TestEmbeddedSecondProcess(t *testing.T) {
	dir := t.TempDir()
	first := start(t, embEnv(dir))
	acked, refusal := writeUnique(first.URL, 0, 50, 10, 4)
	if len(acked) != 50 {
		t.Fatalf("writes: %v", refusal)
	}
	began := time.Now()
	second := launch(t, embEnv(dir))
	if code := second.exitCode(t, patience); code != 1 {
		t.Errorf("the second process exited %d, want 1\n%s", code, second.out.String())
	}
	msg := second.out.String()
	if !strings.Contains(msg, "is in use: another server holds its lock") {
		t.Errorf("the second process said %q; want that another server holds the directory", msg)
	}
	t.Logf("the second process exited after %v: %s", time.Since(began).Round(time.Millisecond), lastLine(msg))
	first.waitReady(t, http.StatusOK)
	checkKept(t, first.URL, acked)
}

// lastLine returns the command's error line ("switchboard: ..."), else
// the last line of its output.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "switchboard: ") {
			return l
		}
	}
	return lines[len(lines)-1]
}

// crashed writes n records to a new directory, kills the process with
// SIGKILL and returns the directory and what was acknowledged. With
// clean, the process is stopped with SIGTERM instead (its log is then
// checkpointed into the bbolt file).
func crashed(t *testing.T, n int, clean bool) (string, []written) {
	t.Helper()
	dir := t.TempDir()
	p := start(t, embEnv(dir))
	acked, refusal := writeUnique(p.URL, 0, n, 100, 8)
	if len(acked) != n {
		t.Fatalf("writes: %v", refusal)
	}
	if clean {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.exitCode(t, patience); code != 0 {
			t.Fatalf("after SIGTERM the process exited %d", code)
		}
	} else {
		p.kill(t)
	}
	return dir, acked
}

// TestEmbeddedTornWAL: after a SIGKILL, the end of the write-ahead log
// holds a write cut short (here: the start of an entry, then garbage), as
// a crash in the middle of an append leaves it. The server starts, every
// acknowledged write is there, and it takes writes again.
func TestEmbeddedTornWAL(t *testing.T) {
	dir, acked := crashed(t, pick(500, 3000), false)
	wal := filepath.Join(dir, "switchboard.wal")
	data, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	_, end := walEntries(t, data)
	// A header that promises more than follows, then random bytes.
	torn := []byte{0xff, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3}
	copy(data[end:], torn)
	if err := os.WriteFile(wal, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, embEnv(dir))
	checkKept(t, p.URL, acked)
	more, refusal := writeUnique(p.URL, len(acked), 50, 100, 4)
	if len(more) != 50 {
		t.Fatalf("writes after the restart: %v", refusal)
	}
	t.Logf("%d acknowledged writes kept across a SIGKILL and a torn entry at the end of the log (at byte %d)", len(acked), end)
}

// walEntries returns where the entries of a write-ahead log start, and
// where they end (the preallocated zeros start): each entry starts with
// its length (big-endian), then its checksum.
func walEntries(t *testing.T, data []byte) (starts []int, end int) {
	t.Helper()
	for end+8 <= len(data) {
		n := int(binary.BigEndian.Uint32(data[end:]))
		if n == 0 || end+8+n > len(data) {
			break
		}
		starts = append(starts, end)
		end += 8 + n
	}
	if len(starts) == 0 {
		t.Fatal("the write-ahead log holds no entry")
	}
	return starts, end
}

// TestEmbeddedCorruptWAL damages one entry in the middle of the
// write-ahead log of a killed process (a flipped byte: its checksum no
// longer matches) while whole, acknowledged entries follow it. The
// server must not start as if nothing happened with the writes after the
// damage gone: it either refuses to start, exiting 1 with an error that
// names the log, or starts with every acknowledged write.
func TestEmbeddedCorruptWAL(t *testing.T) {
	dir, acked := crashed(t, pick(500, 3000), false)
	wal := filepath.Join(dir, "switchboard.wal")
	data, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	starts, _ := walEntries(t, data)
	at := starts[len(starts)/2] + 30
	data[at] ^= 0x40
	if err := os.WriteFile(wal, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := launch(t, embEnv(dir))
	if err := p.waitListening(patience); err != nil {
		if code := p.exitCode(t, patience); code != 1 || !strings.Contains(p.out.String(), "switchboard.wal") {
			t.Errorf("on a damaged log the server exited %d, saying %q; want 1 and the log named", code, lastLine(p.out.String()))
		}
		t.Logf("on a log damaged in entry %d of %d the server refused to start: %s", len(starts)/2, len(starts), lastLine(p.out.String()))
		return
	}
	if lost, first := countLost(p.URL, acked); lost > 0 {
		t.Errorf("the server started on a log damaged in entry %d of %d and %d of %d acknowledged writes are gone (the first: %s)",
			len(starts)/2, len(starts), lost, len(acked), first)
	}
}
