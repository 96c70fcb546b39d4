package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCLIConditionalAndPathWrites runs put, patch, delete and get with
// --if-match and --path (before or after the name) against a real server
// and compares their output, line for line, and their exit status. A
// write at another version is exit status 1 with VERSION_CONFLICT and
// changes nothing.
func TestCLIConditionalAndPathWrites(t *testing.T) {
	bin := buildCLI(t)
	s := startServer(t, nil)
	cases := []struct {
		args       []string
		want       string // stdout
		code       int
		wantStderr string // a part of stderr
	}{
		{[]string{"put", "driver/14", `{"position":{"x":1}}`}, `{"name":"driver/14","version":1,"data":{"position":{"x":1}}}`, 0, ""},
		{[]string{"put", "--if-match", "1", "driver/14", `{"position":{"x":2}}`}, `{"name":"driver/14","version":2,"data":{"position":{"x":2}}}`, 0, ""},
		{[]string{"put", "--if-match", "1", "driver/14", `{}`}, "", 1, `VERSION_CONFLICT: record "driver/14" is at version 2`},
		{[]string{"put", "driver/14", "--path", "position.x", "4"}, `{"name":"driver/14","version":3,"data":{"position":{"x":4}}}`, 0, ""},
		{[]string{"put", "--path", "/position/y", "--if-match", "3", "driver/14", `5`}, `{"name":"driver/14","version":4,"data":{"position":{"x":4,"y":5}}}`, 0, ""},
		{[]string{"put", "driver/14", "--path", "position.z", "--if-match", "3", `6`}, "", 1, "VERSION_CONFLICT"},
		{[]string{"get", "driver/14", "--path", "position.x"}, `{"name":"driver/14","version":4,"path":"position.x","data":4}`, 0, ""},
		{[]string{"get", "--path", "position.z", "driver/14"}, "", 1, "NOT_FOUND"},
		{[]string{"patch", "--if-match", "3", "driver/14", `{"a":1}`}, "", 1, "VERSION_CONFLICT"},
		{[]string{"patch", "driver/14", "--if-match", "4", `{"a":1}`}, `{"name":"driver/14","version":5,"data":{"position":{"x":4,"y":5},"a":1}}`, 0, ""},
		{[]string{"delete", "driver/14", "--path", "position"}, `{"name":"driver/14","version":6,"data":{"a":1}}`, 0, ""},
		{[]string{"delete", "--if-match", "5", "driver/14"}, "", 1, "VERSION_CONFLICT"},
		{[]string{"get", "driver/14"}, `{"name":"driver/14","version":6,"data":{"a":1}}`, 0, ""},
		{[]string{"delete", "--if-match", "6", "driver/14"}, "", 0, ""},
		{[]string{"put", "--if-match", "*", "driver/14", `{}`}, "", 1, "VERSION_CONFLICT"},
		{[]string{"put", "driver/14", "--path", "position..x", "1"}, "", 1, "INVALID_PATH"},
		{[]string{"put", "--", "n", "-1"}, `{"name":"n","version":1,"data":-1}`, 0, ""},
		{[]string{"put", "n", "-1"}, "", 2, "flag provided but not defined: -1"},
		{[]string{"put", "--if-match", "x", "n", "1"}, "", 2, `--if-match "x": want a version`},
		{[]string{"put", "--if-match", "0", "n", "1"}, "", 2, `--if-match "0": want a version`},
		{[]string{"patch", "--path", "a", "n", "1"}, "", 2, "flag provided but not defined: -path"},
		{[]string{"get", "n", "--path"}, "", 2, "flag needs an argument: -path"},
		{[]string{"delete", "n", "extra"}, "", 2, "1 arguments wanted, 2 given"},
	}
	for _, c := range cases {
		stdout, stderr, code := runCLI(t, bin, s.URL, c.args...)
		if c.code == 2 { // the usage goes to stdout
			if !strings.HasPrefix(stdout, "usage: switchboard "+c.args[0]) {
				t.Errorf("%q: stdout %q, want the usage", c.args, stdout)
			}
		} else if want := c.want + "\n"; c.want == "" && stdout != "" || c.want != "" && stdout != want {
			t.Errorf("%q: stdout\n%s\nwant\n%s", c.args, stdout, c.want)
		}
		if code != c.code || !strings.Contains(stderr, c.wantStderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.wantStderr)
		}
		if c.code == 0 && stderr != "" {
			t.Errorf("%q: stderr %q", c.args, stderr)
		}
	}
	for cmd, flags := range map[string][]string{
		"get":    {"--path P"},
		"put":    {"--if-match VERSION", "--path P", "VERSION_CONFLICT"},
		"patch":  {"--if-match VERSION", "VERSION_CONFLICT"},
		"delete": {"--if-match VERSION", "--path P", "VERSION_CONFLICT"},
		"tail":   {"--from ID", "401"},
	} {
		stdout, _, code := runCLI(t, bin, s.URL, cmd, "--help")
		for _, f := range flags {
			if code != 0 || !strings.Contains(stdout, f) {
				t.Errorf("%s --help: exit %d, %q, want it to mention %s", cmd, code, stdout, f)
			}
		}
	}
}

// runTail runs "switchboard tail" with a token until it exits (or 20 s
// pass) and returns its stdout lines, stderr, exit status and how long it
// ran; ready, when not nil, is called once tail has printed its first
// frame after the ready frame.
func runTail(t *testing.T, bin, url, token string, ready func(), subs ...string) ([]string, string, int, time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"tail"}, subs...)...)
	cmd.Env = []string{"SWITCHBOARD_URL=" + url, "SWITCHBOARD_TOKEN=" + token}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var lines []string
	dec := json.NewDecoder(out)
	for {
		var f tailFrame
		if err := dec.Decode(&f); err != nil {
			break
		}
		b, _ := json.Marshal(f)
		lines = append(lines, string(b))
		if f.Event != "ready" && ready != nil {
			ready()
			ready = nil
		}
	}
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return lines, stderr.String(), code, time.Since(start)
}

// streamRequests counts the GET /stream requests in the server's log,
// waiting for at least want of them (the log is written through a buffer).
func streamRequests(s *testServer, want int) (all, refused int) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		all = strings.Count(s.Log(), `"route":"/stream","path":"/stream"`)
		refused = strings.Count(s.Log(), `"route":"/stream","path":"/stream","status":401`)
		if all >= want || time.Now().After(deadline) {
			return all, refused
		}
	}
}

// TestCLITailEndsOn401: tail ends with exit status 1 and UNAUTHENTICATED
// on stderr when its token is revoked (the stream ends, the one reconnect
// gets 401) or expires (the stream ends with the token: tail does not
// reconnect, since the server would refuse it or, within its leeway for
// clock skew, end the new stream at once), never looping on reconnects.
func TestCLITailEndsOn401(t *testing.T) {
	bin := buildCLI(t)
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice"}`))

	t.Run("revoked", func(t *testing.T) {
		s := startServer(t, loginEnv(hook.URL))
		put := func() {
			if st, _, b := do(t, http.MethodPut, s.URL+"/records/doc", "application/json", `{"v":1}`, "Authorization", "Bearer "+signToken(t, "writer", time.Hour)); st/100 != 2 {
				t.Fatalf("PUT doc: %d %s", st, b)
			}
		}
		put()
		st, _, body := do(t, http.MethodPost, s.URL+"/auth/login", "application/json", `{"user":"alice"}`)
		var a loginAnswer
		if st != http.StatusOK || json.Unmarshal(body, &a) != nil {
			t.Fatalf("login: %d %s", st, body)
		}
		lines, stderr, code, took := runTail(t, bin, s.URL, a.Token, func() {
			if st, _, b := do(t, http.MethodPost, s.URL+"/auth/logout", "", "", "Authorization", "Bearer "+a.Token); st != http.StatusNoContent {
				t.Errorf("logout: %d %s", st, b)
			}
		}, "record:doc")
		t.Logf("tail ran %v, printed %q", took, lines)
		if code != 1 || !strings.Contains(stderr, "401 UNAUTHENTICATED") {
			t.Errorf("tail after logout: exit %d, stderr %q; want 1 and 401 UNAUTHENTICATED", code, stderr)
		}
		if len(lines) != 2 || !strings.Contains(lines[1], `"event":"snapshot"`) {
			t.Errorf("tail printed %q, want the ready frame and the snapshot", lines)
		}
		if all, refused := streamRequests(s, 2); all != 2 || refused != 1 {
			t.Errorf("the server saw %d stream requests, %d refused: want the stream and one refused reconnect", all, refused)
		}
	})

	t.Run("expired", func(t *testing.T) {
		s := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
		token := signToken(t, "alice", 2*time.Second)
		lines, stderr, code, took := runTail(t, bin, s.URL, token, nil, "record:doc")
		t.Logf("tail ran %v, printed %q", took, lines)
		if code != 1 || !strings.Contains(stderr, "UNAUTHENTICATED: the token expired at ") {
			t.Errorf("tail with an expiring token: exit %d, stderr %q; want 1 and UNAUTHENTICATED", code, stderr)
		}
		if took > 8*time.Second {
			t.Errorf("tail ran %v with a token valid for 2 s", took)
		}
		if len(lines) != 2 {
			t.Errorf("tail printed %q, want the ready frame and the snapshot only", lines)
		}
		if all, _ := streamRequests(s, 1); all != 1 {
			t.Errorf("the server saw %d stream requests, want 1 (no reconnect)", all)
		}
	})
}
