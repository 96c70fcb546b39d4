package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/server"
)

// TestPermConcurrentBids and TestPGPermConcurrentBids: 20 bidders race
// under data.price > oldData.price. The write rule runs inside the
// store's atomic step, so the accepted prices strictly increase with the
// versions, no lower bid lands, and the highest bid always wins.
func TestPermConcurrentBids(t *testing.T) {
	srv := startRulesServer(t, auctionRules)
	concurrentBids(t, []string{srv.URL})
}

func TestPGPermConcurrentBids(t *testing.T) {
	_, servers := pgServers(t, 2, rulesEnv(writeRules(t, auctionRules)))
	concurrentBids(t, []string{servers[0].URL, servers[1].URL})
}

func concurrentBids(t *testing.T, bases []string) {
	const bidders = 20
	item := "/records/auction/item/sam/lamp"
	sam := userToken(t, "sam", nil)
	if st, b := sam.send(t, "PUT", bases[0]+item, "application/json", `{"price":0}`); st != 201 {
		t.Fatalf("create: %d %s", st, b)
	}
	type bid struct{ version, price float64 }
	var mu sync.Mutex
	var accepted []bid
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, price := range rand.Perm(bidders) {
		u := userToken(t, fmt.Sprintf("bidder%d", i), map[string]any{"canBid": true})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, b := u.send(t, "PUT", bases[i%len(bases)]+item, "application/json", fmt.Sprintf(`{"price":%d}`, price+1))
			switch st {
			case 200:
				var out struct {
					Version float64
					Data    struct{ Price float64 }
				}
				json.Unmarshal(b, &out)
				mu.Lock()
				accepted = append(accepted, bid{out.Version, out.Data.Price})
				mu.Unlock()
			case 403:
			default:
				t.Errorf("bid %d: %d %s", price+1, st, b)
			}
		}()
	}
	close(start)
	wg.Wait()
	slices.SortFunc(accepted, func(a, b bid) int { return int(a.version - b.version) })
	last := bid{1, 0}
	for _, a := range accepted {
		if a.version != last.version+1 || a.price <= last.price {
			t.Errorf("accepted bids %v: version %v at %v after version %v at %v", accepted, a.version, a.price, last.version, last.price)
		}
		last = a
	}
	if last.price != bidders {
		t.Errorf("accepted bids %v: the highest bid, %d, did not win", accepted, bidders)
	}
	wantRecordData(t, bases[len(bases)-1], sam, strings.TrimPrefix(item, "/records/"), last.version, fmt.Sprintf(`{"price":%d}`, bidders))
	t.Logf("%d of %d bids accepted", len(accepted), bidders)
}

// TestPermRuleErrorLoggedOnce: a rule that fails at run time (a fourth
// record() lookup) denies with 403 every time, is logged once, and counts
// in the metrics; the rules beside it still work.
func TestPermRuleErrorLoggedOnce(t *testing.T) {
	srv := startRulesServer(t, `record:
  "*":
    read: "record('a') != null || record('b') != null || record('c') != null || record('d') != null"
    create: true
  "ok/*":
    read: true
`)
	ann := userToken(t, "ann", nil)
	const n = 20
	for i := range n {
		st, b := ann.send(t, "GET", srv.URL+fmt.Sprintf("/records/doc%d", i), "", "")
		wantStatus(t, "GET under the failing rule", st, b, 403, "doc")
	}
	if st, b := ann.send(t, "GET", srv.URL+"/records/ok/x", "", ""); st != 404 {
		t.Errorf("GET under a working rule: %d %s", st, b)
	}
	_, _, b := do(t, http.MethodGet, srv.URL+"/metrics", "", "")
	if got := metricValue(string(b), "switchboard_rule_errors_total"); got != n {
		t.Errorf("switchboard_rule_errors_total = %v, want %d", got, n)
	}
	if got := metricValue(string(b), `switchboard_rule_evaluations_total{action="read",result="deny",section="record"}`); got != n {
		t.Errorf("record read denials = %v, want %d", got, n)
	}
	srv.Stop(t)
	log := srv.Log()
	if c := strings.Count(log, "permission rule failed"); c != 1 {
		t.Errorf("the failing rule was logged %d times, want once:\n%s", c, log)
	}
	if !strings.Contains(log, `rules.yaml:3"`) || !strings.Contains(log, "more than 3 record() lookups") {
		t.Errorf("the log does not name the rule's file:line and the reason:\n%s", log)
	}
}

// TestPermBadFileAtStart: a rules file that does not compile stops the
// server at start, naming the file, the line and the reason.
func TestPermBadFileAtStart(t *testing.T) {
	file := writeRules(t, "record:\n  \"a/*\":\n    read: true\n    write: \"data.price >\"\n")
	vars := map[string]string{"HOST": "127.0.0.1", "PORT": "0", "AUTH_MODE": "open", "DATA_DIR": t.TempDir(), "PERMISSIONS_FILE": file}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := server.Run(ctx, []string{"switchboard"}, func(k string) string { return vars[k] }, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), file+":4:") {
		t.Errorf("Run = %v, want an error naming %s:4", err, file)
	}
	vars["PERMISSIONS_FILE"] = filepath.Join(t.TempDir(), "missing.yaml")
	if err := server.Run(ctx, []string{"switchboard"}, func(k string) string { return vars[k] }, io.Discard, nil); err == nil ||
		!strings.Contains(err.Error(), "PERMISSIONS_FILE") {
		t.Errorf("Run with a missing file = %v, want an error naming PERMISSIONS_FILE", err)
	}
}

// TestPermWarnsWithoutRules: without PERMISSIONS_FILE the server says at
// start that everyone may do everything.
func TestPermWarnsWithoutRules(t *testing.T) {
	srv := startServer(t, nil)
	srv.Stop(t)
	if log := srv.Log(); !strings.Contains(log, `"level":"WARN","msg":"PERMISSIONS_FILE is not set`) {
		t.Errorf("no warning about the missing rules file:\n%s", log)
	}
}

// TestPermReloadOnHangup runs the command as an operator does: on SIGHUP
// a good rules file replaces the rules at once (and an open subscription
// it refuses gets denied); a bad one is refused with a log line, and the
// rules in force stay.
func TestPermReloadOnHangup(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	file := writeRules(t, "record:\n  \"*\":\n    read: false\n")
	cmd := exec.Command(bin)
	cmd.Env = []string{"HOST=127.0.0.1", "PORT=0", "AUTH_MODE=open", "DATA_DIR=" + t.TempDir(), "PERMISSIONS_FILE=" + file}
	stdout, logw := io.Pipe()
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = logw, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); logw.Close(); exited <- err }()
	t.Cleanup(func() { cmd.Process.Kill() })
	var url string
	select {
	case url = <-listening(io.TeeReader(stdout, &log)):
	case err := <-exited:
		t.Fatalf("the command exited at start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not start in 10s")
	}
	waitHealthy(t, url)
	read := func() int { st, _, _ := do(t, "GET", url+"/records/doc", "", ""); return st }
	if st := read(); st != 403 {
		t.Fatalf("GET under read: false: %d", st)
	}
	hangup := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s; the log:\n%s", what, log.String())
			}
		}
	}
	hangup("record:\n  \"*\":\n    read: true\n")
	waitFor("the good file took effect", func() bool { return read() == 404 })
	// A subscription the next good file refuses is denied on the open stream.
	sse := openSSE(t, url+"/stream?record=doc&record=other", "")
	defer sse.Close()
	sse.Expect(t, "ready")
	sse.Expect(t, "snapshot")
	sse.Expect(t, "snapshot")
	hangup("record:\n  \"*\":\n    read: true\n  \"doc\":\n    read: false\n")
	if got := sse.Expect(t, "denied").Data; got != `{"subscription":{"record":"doc"},"code":"PERMISSION_DENIED"}` {
		t.Errorf("after SIGHUP: denied %s, want the subscription to doc", got)
	}
	waitFor("the second good file took effect", func() bool { return read() == 403 })
	hangup("record:\n  \"*\":\n    read: nope(\n")
	waitFor("the bad file was refused", func() bool {
		return strings.Contains(log.String(), "the new permission rules are refused")
	})
	if !strings.Contains(log.String(), file+":3:") {
		t.Errorf("the refusal does not name %s:3:\n%s", file, log.String())
	}
	if st := read(); st != 403 {
		t.Errorf("GET after the bad file: %d, want 403 under the rules in force", st)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("the command did not exit in 15s after SIGTERM")
	}
}

// String returns what was written so far.
func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPermFailedWritesTellNothing: a caller who may neither read nor
// write a record learns nothing of it from a write: a JSON Patch test
// that fails and one that passes, a stale If-Match, a path or a record
// that is missing, all answer 403, never 409, 412 or 404. A caller who
// may read it gets those answers as before.
func TestPermFailedWritesTellNothing(t *testing.T) {
	srv := startRulesServer(t, `
record:
  "vault/$id":
    read: false
    create: true
    write: false
  "shelf/$id":
    read: true
    create: true
    write: false
`)
	u := userToken(t, "mallory", nil)
	const jsonPatch = "application/json-patch+json"
	for _, kind := range []string{"vault", "shelf"} {
		base := srv.URL + "/records/" + kind
		if st, b := u.send(t, "PUT", base+"/a", "application/json", `{"n":1}`); st != 201 {
			t.Fatalf("create %s/a: %d %s", kind, st, b)
		}
		for _, c := range []struct {
			what, method, target, contentType, body string
			headers                                 []string
			reader                                  int // the status for a caller who may read
		}{
			{"a JSON Patch test that fails", "PATCH", "/a", jsonPatch, `[{"op":"test","path":"/n","value":2}]`, nil, 409},
			{"a JSON Patch test that passes", "PATCH", "/a", jsonPatch, `[{"op":"test","path":"/n","value":1}]`, nil, 403},
			{"a stale If-Match", "PUT", "/a", "application/json", `{"n":0}`, []string{"If-Match", `"7"`}, 403},
			{"a stale If-Match and a patch that fails", "PATCH", "/a", jsonPatch, `[{"op":"remove","path":"/x"}]`, []string{"If-Match", `"7"`}, 412},
			{"a missing path", "DELETE", "/a?path=x", "", "", nil, 404},
			{"a missing record", "PATCH", "/missing", "application/merge-patch+json", `{"n":2}`, nil, 404},
		} {
			want := c.reader
			if kind == "vault" {
				want = 403
			}
			st, b := u.send(t, c.method, base+c.target, c.contentType, c.body, c.headers...)
			if st != want {
				t.Errorf("%s on %s: %d %s, want %d", c.what, kind, st, b, want)
			}
			if want == 403 && strings.Contains(string(b), "currentVersion") {
				t.Errorf("%s on %s: the refusal tells the version: %s", c.what, kind, b)
			}
		}
	}
}
