package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api/client"
	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// buildCLI builds the command at the repository's root.
func buildCLI(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runCLI runs the command with args against url and returns its stdout,
// stderr and exit status.
func runCLI(t *testing.T, bin, url string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"SWITCHBOARD_URL=" + url}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

var eventID = regexp.MustCompile(`"id":"[^"]*"`)

// TestCLICommands runs each client command of the binary against a real
// server and compares its output, line for line, and its exit status.
func TestCLICommands(t *testing.T) {
	bin := buildCLI(t)
	s := startServer(t, nil)
	cases := []struct {
		args       []string
		want       string // stdout, ids replaced by "id":"ID"
		code       int
		wantStderr string // a part of stderr
	}{
		{[]string{"put", "driver/14", `{"x":1,"y":2}`}, `{"name":"driver/14","version":1,"data":{"x":1,"y":2}}` + "\n", 0, ""},
		{[]string{"patch", "driver/14", `{"y":null,"z":3}`}, `{"name":"driver/14","version":2,"data":{"x":1,"z":3}}` + "\n", 0, ""},
		{[]string{"get", "driver/14"}, `{"name":"driver/14","version":2,"data":{"x":1,"z":3}}` + "\n", 0, ""},
		{[]string{"delete", "driver/14"}, "", 0, ""},
		{[]string{"get", "driver/14"}, "", 1, "NOT_FOUND"},
		{[]string{"delete", "driver/nope"}, "", 1, "NOT_FOUND"},
		{[]string{"emit", "chat/lobby", `{"text":"hi"}`}, `{"id":"ID"}` + "\n", 0, ""},
		{[]string{"call", "add-two", `[1,2]`}, "", 1, "NO_RPC_PROVIDER"},
		{[]string{"get"}, "", 2, "get: 1 arguments wanted"},
		{[]string{"put", "driver/1", "{not json"}, "", 2, "not valid JSON"},
		{[]string{"tail"}, "", 2, "a subscription is needed"},
		{[]string{"tail", "records:x"}, "", 2, "bad subscription"},
		{[]string{"tail", "--bogus", "record:x"}, "", 2, "flag provided but not defined"},
	}
	for _, c := range cases {
		stdout, stderr, code := runCLI(t, bin, s.URL, c.args...)
		if c.code == 2 { // the usage goes to stdout
			if !strings.HasPrefix(stdout, "usage: switchboard "+c.args[0]) {
				t.Errorf("%q: stdout %q, want the usage", c.args, stdout)
			}
		} else if got := eventID.ReplaceAllString(stdout, `"id":"ID"`); got != c.want {
			t.Errorf("%q: stdout\n%s\nwant\n%s", c.args, got, c.want)
		}
		if code != c.code || !strings.Contains(stderr, c.wantStderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.wantStderr)
		}
		if c.code == 0 && stderr != "" {
			t.Errorf("%q: stderr %q", c.args, stderr)
		}
	}
	for _, cmd := range []string{"get", "put", "patch", "delete", "emit", "call", "tail"} {
		stdout, _, code := runCLI(t, bin, s.URL, cmd, "--help")
		if code != 0 || !strings.HasPrefix(stdout, "usage: switchboard "+cmd) || !strings.Contains(stdout, "SWITCHBOARD_URL") {
			t.Errorf("%s --help: exit %d, %q", cmd, code, stdout)
		}
	}
	// The record written by put is what the HTTP API answers.
	stdout, _, _ := runCLI(t, bin, s.URL, "put", "driver/2", `{"a":[1,"b"]}`)
	st, _, body := do(t, "GET", s.URL+"/records/driver/2", "", "")
	if st != 200 || !strings.Contains(string(body), `"data":{"a":[1,"b"]}`) || !strings.Contains(stdout, `"version":1`) {
		t.Errorf("after put: %d %s (printed %s)", st, body, stdout)
	}
}

type tailFrame struct {
	Event string          `json:"event"`
	ID    string          `json:"id"`
	Data  json.RawMessage `json:"data"`
}

// startTail starts "switchboard tail" and returns its frames as they come.
func startTail(t *testing.T, bin, url string, args ...string) (<-chan tailFrame, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"tail"}, args...)...)
	cmd.Env = []string{"SWITCHBOARD_URL=" + url}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	frames := make(chan tailFrame, 100)
	go func() {
		defer close(frames)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var f tailFrame
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Errorf("tail printed %q: %v", sc.Text(), err)
				return
			}
			frames <- f
		}
	}()
	return frames, cmd
}

// next returns the next frame that is not a ready frame.
func next(t *testing.T, frames <-chan tailFrame) tailFrame {
	t.Helper()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("tail ended")
			}
			if f.Event == "ready" {
				continue
			}
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("no frame from tail in 10s")
		}
	}
}

// TestCLITail: tail prints a snapshot, then a change, then an event, one
// JSON object a line; started again with --from the id of the change, it
// prints the event and nothing before it.
func TestCLITail(t *testing.T) {
	bin := buildCLI(t)
	s := startServer(t, nil)
	put(t, s.URL, "driver/14", `{"x":1}`)
	frames, cmd := startTail(t, bin, s.URL, "record:driver/14", "event:chat/*")
	f := next(t, frames)
	if f.Event != "snapshot" || string(f.Data) != `{"name":"driver/14","version":1,"data":{"x":1}}` {
		t.Fatalf("first frame %+v, want the snapshot", f)
	}
	put(t, s.URL, "driver/14", `{"x":2}`)
	change := next(t, frames)
	if change.Event != "record" || change.ID == "" || !strings.Contains(string(change.Data), `"data":{"x":2}`) {
		t.Fatalf("frame %+v, want the change", change)
	}
	publishEvent(t, s.URL, "chat/lobby", `{"text":"hi"}`)
	ev := next(t, frames)
	if ev.Event != "event" || !strings.Contains(string(ev.Data), `"data":{"text":"hi"}`) {
		t.Fatalf("frame %+v, want the event", ev)
	}
	cmd.Process.Kill()

	frames, _ = startTail(t, bin, s.URL, "--from", change.ID, "record:driver/14", "event:chat/*")
	again := next(t, frames)
	if again.Event != "event" || again.ID != ev.ID {
		t.Fatalf("resumed after the change, first frame %+v, want the event %s", again, ev.ID)
	}
	put(t, s.URL, "driver/14", `{"x":3}`)
	if f := next(t, frames); f.Event != "record" || !strings.Contains(string(f.Data), `"version":3`) {
		t.Fatalf("after resume, frame %+v, want version 3", f)
	}
}

// TestCLITailReconnects: when the server restarts on the same address and
// data, tail reconnects by itself with the last id it printed: the next
// change comes once, with no snapshot or change repeated.
func TestCLITailReconnects(t *testing.T) {
	bin := buildCLI(t)
	dir, port := t.TempDir(), strconv.Itoa(testkit.FreePort(t))
	env := map[string]string{"DATA_DIR": dir, "PORT": port}
	s := startServer(t, env)
	put(t, s.URL, "driver/14", `{"x":1}`)
	frames, _ := startTail(t, bin, s.URL, "record:driver/14")
	if f := next(t, frames); f.Event != "snapshot" {
		t.Fatalf("first frame %+v, want the snapshot", f)
	}
	put(t, s.URL, "driver/14", `{"x":2}`)
	if f := next(t, frames); f.Event != "record" || !strings.Contains(string(f.Data), `"version":2`) {
		t.Fatalf("frame %+v, want version 2", f)
	}
	s.Stop(t)
	s = startServer(t, env)
	put(t, s.URL, "driver/14", `{"x":3}`)
	if f := next(t, frames); f.Event != "record" || !strings.Contains(string(f.Data), `"version":3`) {
		t.Fatalf("after the restart, frame %+v, want version 3 only", f)
	}
	put(t, s.URL, "driver/14", `{"x":4}`)
	if f := next(t, frames); f.Event != "record" || !strings.Contains(string(f.Data), `"version":4`) {
		t.Fatalf("frame %+v, want version 4", f)
	}
}

// TestCLICall: call prints the provider's answer, and a provider's error
// is exit status 1 with RPC_ERROR and its message on stderr.
func TestCLICall(t *testing.T) {
	bin := buildCLI(t)
	s := startServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go client.NewClient(s.URL).Provide(ctx, []string{"add-two"}, func(ctx context.Context, r client.Request) (any, error) {
		var xs []int
		if err := r.Decode(&xs); err != nil || len(xs) != 2 {
			return nil, errors.New("two numbers wanted")
		}
		return map[string]int{"sum": xs[0] + xs[1]}, nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		stdout, stderr, code := runCLI(t, bin, s.URL, "call", "add-two", "[1,2]")
		if code == 1 && strings.Contains(stderr, "NO_RPC_PROVIDER") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // the provider is not polling yet
			continue
		}
		if stdout != `{"sum":3}`+"\n" || code != 0 || stderr != "" {
			t.Fatalf("call add-two: %q, exit %d, stderr %q", stdout, code, stderr)
		}
		break
	}
	stdout, stderr, code := runCLI(t, bin, s.URL, "call", "add-two", `"x"`)
	if stdout != "" || code != 1 || !strings.Contains(stderr, "RPC_ERROR: ") || !strings.Contains(stderr, "two numbers wanted") {
		t.Fatalf("call with a bad input: %q, exit %d, stderr %q", stdout, code, stderr)
	}
}
