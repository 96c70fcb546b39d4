package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// presenceEnv is the environment of the presence tests' servers: open mode
// (the watchers are anonymous, which is not presence) with tokens for the
// users, and a short grace.
func presenceEnv(grace time.Duration) map[string]string {
	// A short heartbeat: a detached stream notices that its client went
	// away only when it next writes.
	return map[string]string{"AUTH_MODE": "open", "JWT_SECRET": authSecret, "LEAVE_GRACE": grace.String(), "HEARTBEAT_INTERVAL": "100ms"}
}

// presenceWatcher applies a stream's presence frames to the users it knows
// online.
type presenceWatcher struct {
	c      *sseClient
	online map[string]bool
}

func watchPresence(t *testing.T, base, sub string) *presenceWatcher {
	t.Helper()
	c := openSSE(t, base+"/stream?presence="+url.QueryEscape(sub), "")
	c.Expect(t, "ready")
	return &presenceWatcher{c: c, online: map[string]bool{}}
}

// next reads the next presence frame and applies it.
func (w *presenceWatcher) next(t *testing.T, timeout time.Duration) (string, bool) {
	t.Helper()
	for {
		f := w.c.Next(t, timeout)
		if f.Event != "presence" {
			continue
		}
		var d struct {
			User   string `json:"user"`
			Online bool   `json:"online"`
		}
		if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
			t.Fatalf("presence frame %q: %v", f.Data, err)
		}
		if d.Online {
			w.online[d.User] = true
		} else {
			delete(w.online, d.User)
		}
		return d.User, d.Online
	}
}

// until applies frames until the watcher knows exactly want online.
func (w *presenceWatcher) until(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(sortedKeys(w.online), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher knows %q online, want %q", sortedKeys(w.online), want)
		}
		w.next(t, time.Until(deadline))
	}
}

func sortedKeys(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// getPresence returns GET /presence's users (query is "" or "?user=...").
func getPresence(t *testing.T, base, query string) []string {
	t.Helper()
	st, _, body := do(t, http.MethodGet, base+"/presence"+query, "", "")
	var b struct {
		Users []string `json:"users"`
	}
	if st != http.StatusOK || json.Unmarshal(body, &b) != nil || b.Users == nil {
		t.Fatalf("GET /presence%s: %d %s", query, st, body)
	}
	return b.Users
}

// tab opens a stream of user on base, as a browser tab does.
func tab(t *testing.T, base, user string) *sseClient {
	t.Helper()
	c := openSSE(t, base+"/stream?event=chat&access_token="+signToken(t, user, time.Hour), "")
	c.Expect(t, "ready")
	return c
}

// TestPGPresence: two users with two tabs each, one on each of two
// instances: both are online on either instance, through GET /presence
// and presence=* streams; closing one tab changes nothing; closing both
// tabs of bob makes him offline everywhere once LEAVE_GRACE has passed;
// presence=bob starts with bob's state.
func TestPGPresence(t *testing.T) {
	const grace = 300 * time.Millisecond
	_, servers := pgServers(t, 2, presenceEnv(grace))
	a, b := servers[0].URL, servers[1].URL
	watchers := []*presenceWatcher{watchPresence(t, a, "*"), watchPresence(t, b, "*")}
	before := watchPresence(t, b, "bob")
	if u, on := before.next(t, 5*time.Second); u != "bob" || on {
		t.Fatalf("presence=bob before bob came: first frame %s %v, want bob offline", u, on)
	}

	tab(t, a, "alice")
	tab(t, b, "alice")
	bobA, bobB := tab(t, a, "bob"), tab(t, b, "bob")
	for _, w := range watchers {
		w.until(t, "alice", "bob")
	}
	for _, base := range []string{a, b} {
		if got := getPresence(t, base, ""); !slices.Equal(got, []string{"alice", "bob"}) {
			t.Errorf("GET %s/presence = %q", base, got)
		}
	}
	if u, on := before.next(t, 5*time.Second); u != "bob" || !on {
		t.Fatalf("presence=bob: %s %v, want bob online", u, on)
	}
	after := watchPresence(t, a, "bob")
	if u, on := after.next(t, 5*time.Second); u != "bob" || !on {
		t.Fatalf("presence=bob after bob came: first frame %s %v, want bob online", u, on)
	}
	if got := getPresence(t, a, "?user=carol&user=bob"); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("GET /presence?user=carol&user=bob = %q", got)
	}

	bobA.Close()
	for _, w := range watchers {
		if f, ok := w.c.TryNext(3 * grace); ok {
			t.Fatalf("one of bob's tabs closed: frame %s %s", f.Event, f.Data)
		}
	}
	bobB.Close()
	closed := time.Now()
	for _, w := range append(watchers, before, after) {
		if u, on := w.next(t, 10*time.Second); u != "bob" || on {
			t.Fatalf("bob's last tab closed: frame %s %v, want bob offline", u, on)
		}
	}
	if took := time.Since(closed); took < grace {
		t.Errorf("bob went offline %v after his last tab closed, before LEAVE_GRACE (%v)", took, grace)
	} else {
		t.Logf("bob offline on both instances %v after his last tab closed", took.Round(time.Millisecond))
	}
	for _, base := range []string{a, b} {
		if got := getPresence(t, base, ""); !slices.Equal(got, []string{"alice"}) {
			t.Errorf("GET %s/presence = %q", base, got)
		}
	}
}

// TestPresenceBadUser: user= values that are no user id, or too many of
// them, are refused with INVALID_PARAMETER naming user.
func TestPresenceBadUser(t *testing.T) {
	srv := startServer(t, presenceEnv(time.Second))
	for _, q := range []string{"?user=", "?user=a%00b", "?user=" + strings.Repeat("x", 257), "?user=a" + strings.Repeat("&user=a", 1000)} {
		st, _, body := do(t, http.MethodGet, srv.URL+"/presence"+q, "", "")
		var p struct {
			Code, Parameter string
		}
		json.Unmarshal(body, &p)
		if st != http.StatusBadRequest || p.Code != "INVALID_PARAMETER" || p.Parameter != "user" {
			t.Errorf("GET /presence%.40s: %d %s", q, st, body)
		}
	}
	if got := getPresence(t, srv.URL, "?user=nobody"); len(got) != 0 {
		t.Errorf("GET /presence?user=nobody = %q", got)
	}
}

// TestPGPresenceKilledInstance: an instance killed with SIGKILL (it
// closes nothing) stops counting its users within 30 s: a presence=*
// stream on another instance sees them go offline.
func TestPGPresenceKilledInstance(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := pgtest.NewDatabase(t)
	env := presenceEnv(300 * time.Millisecond)
	env["DATABASE_URL"] = db
	survivor := startServer(t, env)

	cmd := exec.Command(bin)
	cmd.Env = []string{"HOST=127.0.0.1", "PORT=0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, logw := io.Pipe()
	cmd.Stdout = logw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logw.Close(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	var victim string
	select {
	case victim = <-listening(stdout):
	case <-exited:
		t.Fatal("the command exited at start")
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not start in 30s")
	}
	waitReadyz(t, victim, http.StatusOK, 30*time.Second)

	w := watchPresence(t, survivor.URL, "*")
	tab(t, victim, "alice")
	tab(t, victim, "alice")
	tab(t, survivor.URL, "bob")
	w.until(t, "alice", "bob")

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-exited
	for {
		u, on := w.next(t, 35*time.Second)
		if u == "alice" && !on {
			break
		}
	}
	took := time.Since(killed)
	t.Logf("alice offline on the surviving instance %v after her instance was killed", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("alice went offline %v after the kill, more than 30s", took)
	}
	w.until(t, "bob")
}
