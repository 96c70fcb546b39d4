package e2e

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logLine is one line of the server's JSON log.
type logLine map[string]any

// logLines parses a server's JSON log.
func logLines(t testing.TB, log string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// find returns the lines with msg whose attribute key is value.
func find(lines []logLine, msg, key, value string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l["msg"] == msg && (key == "" || l[key] == value) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits until the server has logged a line with msg whose key is
// value, and returns it.
func waitLog(t testing.TB, srv *testServer, msg, key, value string) logLine {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ls := find(logLines(t, srv.Log()), msg, key, value); len(ls) > 0 {
			return ls[0]
		}
	}
	t.Fatalf("no %q line with %s=%q in the log:\n%s", msg, key, value, srv.Log())
	return nil
}

// TestRequestLog: every request gets one log line with its route, its
// duration in milliseconds, its error code when it failed and a request
// id: the caller's X-Request-Id when sane, else a new one, sent back in
// X-Request-Id and in every problem+json as requestId. A stream logs its
// end (id, user, duration, frames, bytes, reason), and a clean shutdown
// with streams open logs no WARN or ERROR.
func TestRequestLog(t *testing.T) {
	srv := startServer(t, nil)

	_, h, _ := do(t, http.MethodPut, srv.URL+"/records/obs/a", "application/json", `{"n":1}`, "X-Request-Id", "trace-42")
	if h.Get("X-Request-Id") != "trace-42" {
		t.Errorf("X-Request-Id %q, want the caller's trace-42", h.Get("X-Request-Id"))
	}
	// A forged id (a header injection, a log line) is replaced.
	st, h, body := do(t, http.MethodGet, srv.URL+"/records/obs/none", "", "", "X-Request-Id", `x" level=ERROR`)
	var p struct{ Code, RequestID string }
	json.Unmarshal(body, &p)
	generated := h.Get("X-Request-Id")
	if st != http.StatusNotFound || p.Code != "NOT_FOUND" || p.RequestID == "" || p.RequestID != generated || strings.Contains(generated, `"`) {
		t.Errorf("GET of a missing record: %d %s, X-Request-Id %q; want 404 NOT_FOUND with the generated request id in both", st, body, generated)
	}
	do(t, http.MethodGet, srv.URL+"/no/such/route/obs-secret", "", "")

	// One stream ends by the client going, one by the drain at shutdown.
	gone := openSSE(t, srv.URL+"/stream?record=obs/a", "")
	goneID := gone.Expect(t, "ready").Decode(t)["stream"].(string)
	gone.Expect(t, "snapshot")
	gone.Close()
	ended := waitLog(t, srv, "stream ended", "stream", goneID)
	if ended["reason"] != "client_gone" || ended["frames"].(float64) < 2 || ended["bytes"].(float64) <= 0 {
		t.Errorf("end of a stream the client closed: %v; want reason client_gone, its frames and bytes", ended)
	}
	var open []string
	var clients []*sseClient
	for range 3 {
		c := openSSE(t, srv.URL+"/stream?record=obs/a&presence=*", "")
		open = append(open, c.Expect(t, "ready").Decode(t)["stream"].(string))
		c.Expect(t, "snapshot")
		clients = append(clients, c)
	}
	put(t, srv.URL, "obs/a", `{"n":2}`)
	for _, c := range clients {
		c.Expect(t, "record")
	}
	srv.Stop(t)

	lines := logLines(t, srv.Log())
	reqs := find(lines, "request", "", "")
	if len(reqs) < 8 {
		t.Fatalf("%d request lines, want one per request:\n%s", len(reqs), srv.Log())
	}
	for _, l := range reqs {
		id, _ := l["request_id"].(string)
		ms, isNumber := l["duration_ms"].(float64)
		if id == "" || !isNumber || ms < 0 || ms > 60_000 || l["duration"] != nil || l["route"] == nil {
			t.Errorf("request line %v: want a request_id, route and duration_ms in milliseconds", l)
		}
	}
	if ls := find(reqs, "request", "request_id", "trace-42"); len(ls) != 1 || ls[0]["route"] != "/records/*" || ls[0]["code"] != nil {
		t.Errorf("the PUT's line: %v; want one, with the caller's id, route /records/* and no code", ls)
	}
	if ls := find(reqs, "request", "request_id", generated); len(ls) != 1 || ls[0]["code"] != "NOT_FOUND" || ls[0]["status"] != 404.0 {
		t.Errorf("the 404's line: %v; want its code NOT_FOUND and the generated id", ls)
	}
	if ls := find(reqs, "request", "path", "/no/such/route/obs-secret"); len(ls) != 1 || ls[0]["route"] != "unmatched" {
		t.Errorf("an unknown route's line: %v; want route \"unmatched\"", ls)
	}
	for _, id := range open {
		ls := find(lines, "stream ended", "stream", id)
		if len(ls) != 1 || ls[0]["reason"] != "drain" || ls[0]["frames"].(float64) < 3 || ls[0]["duration_ms"] == nil {
			t.Errorf("end of stream %s at shutdown: %v; want one line, reason drain, with its frames and duration", id, ls)
		}
	}
	down := false
	for _, l := range lines {
		down = down || l["msg"] == "shutting down"
		if level := l["level"]; level == "ERROR" || (down && level == "WARN") {
			t.Errorf("a clean shutdown logged %v", l)
		}
	}
	if !down {
		t.Error(`no "shutting down" line`)
	}
}

// metrics reads /metrics: every sample, by its name with labels.
func metrics(t testing.TB, base string) map[string]float64 {
	t.Helper()
	_, _, b := do(t, http.MethodGet, base+"/metrics", "", "")
	out := make(map[string]float64)
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitSample waits until the sample of /metrics named so is want.
func waitSample(t testing.TB, base, name string, want float64) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = metrics(t, base)[name]
		if got == want {
			return
		}
	}
	t.Fatalf("%s = %v, want %v", name, got, want)
}

// TestMetricsMove: after a scripted workload (writes, events, streams, an
// RPC, a refused and a failed login, a slow consumer, an unknown route),
// /metrics has every metric, each moved by what the workload did, and no
// label holds a raw path.
func TestMetricsMove(t *testing.T) {
	hook := newLoginHook(t, hookJSON(http.StatusUnauthorized, `{}`))
	env := loginEnv(hook.URL, "AUTH_MODE", "open",
		"STREAM_BUFFER_BYTES", "1048576", "MAX_BODY_BYTES", "65536", "MAX_RECORD_BYTES", "65536")
	srv := startServer(t, env)
	t.Cleanup(rpcHTTP.CloseIdleConnections)
	before := metrics(t, srv.URL)
	for _, name := range []string{
		"switchboard_streams_open", "switchboard_subscriptions", "switchboard_frames_sent_total",
		"switchboard_frames_dropped_total", "switchboard_slow_disconnects_total",
		"switchboard_delivery_lag_seconds_count", "switchboard_rpc_calls_waiting", "switchboard_rpc_polls_waiting",
		"switchboard_auth_webhook_failures_total",
		`switchboard_auth_webhook_duration_seconds_count{result="refused"}`,
		`switchboard_limit_refusals_total{limit="RATE_LIMIT"}`,
		`switchboard_limit_refusals_total{limit="MAX_STREAMS"}`,
	} {
		if v, ok := before[name]; !ok || v != 0 {
			t.Errorf("before any work, %s = %v (present: %v), want 0", name, v, ok)
		}
	}

	// Writes, events and a stream that takes them.
	c := openSSE(t, srv.URL+"/stream?record=obs/doc&event=obs/*", "")
	c.Expect(t, "ready")
	c.Expect(t, "snapshot")
	waitSample(t, srv.URL, "switchboard_streams_open", 1)
	waitSample(t, srv.URL, "switchboard_subscriptions", 2)
	for i := range 3 {
		put(t, srv.URL, "obs/doc", strconv.Itoa(i))
		c.Expect(t, "record")
		publishEvent(t, srv.URL, "obs/ping", `"hi"`)
		c.Expect(t, "event")
	}
	// The RPC: a provider's poll waits, then a call waits for its answer.
	polled := make(chan rpcRequest, 1)
	go func() { polled <- rpcPollOne(t, srv.URL, "name=obs-add") }()
	waitSample(t, srv.URL, "switchboard_rpc_polls_waiting", 1)
	call := rpcCall(t, context.Background(), srv.URL, "obs-add", `[1,2]`)
	req := <-polled
	waitSample(t, srv.URL, "switchboard_rpc_calls_waiting", 1)
	mustAnswer(t, srv.URL, req.ID, `{"data":3}`)
	if r := waitResult(t, call); r.Status != http.StatusOK {
		t.Fatalf("the call: %v", r)
	}
	waitSample(t, srv.URL, "switchboard_rpc_calls_waiting", 0)
	// Logins: one refused by the webhook, one it fails to answer.
	if st, _, b := do(t, http.MethodPost, srv.URL+"/auth/login", "application/json", `{"user":"x"}`); st != http.StatusUnauthorized {
		t.Fatalf("refused login: %d %s", st, b)
	}
	hook.set(hookJSON(http.StatusInternalServerError, `oops`))
	if st, _, b := do(t, http.MethodPost, srv.URL+"/auth/login", "application/json", `{"user":"x"}`); st != http.StatusServiceUnavailable {
		t.Fatalf("failed login: %d %s", st, b)
	}
	// Limits: a body too large (declared, and sent without a length), a
	// record too large, a collection too large.
	big := `"` + strings.Repeat("x", 70<<10) + `"`
	if st, _, b := do(t, http.MethodPut, srv.URL+"/records/obs/big", "application/json", big); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of 70 KiB: %d %s", st, b)
	}
	chunked, _ := http.NewRequest(http.MethodPut, srv.URL+"/records/obs/big", io.MultiReader(strings.NewReader(big)))
	chunked.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(chunked); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of 70 KiB without a length: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	half := `"` + strings.Repeat("x", 40<<10) + `"`
	put(t, srv.URL, "obs/half", `{"a":`+half+`}`)
	if st, _, b := do(t, http.MethodPut, srv.URL+"/records/obs/half?path=b", "application/json", half); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("a path write past MAX_RECORD_BYTES: %d %s", st, b)
	}
	do(t, http.MethodGet, srv.URL+"/records/obs/raw-path-secret", "", "")
	do(t, http.MethodGet, srv.URL+"/no/such/route", "", "")
	slowConsumer(t, srv)
	c.Close()
	waitSample(t, srv.URL, "switchboard_streams_open", 0)

	after := metrics(t, srv.URL)
	for name, want := range map[string]float64{
		"switchboard_slow_disconnects_total":                                                            1,
		`switchboard_streams_ended_total{reason="slow_consumer"}`:                                       1,
		`switchboard_streams_ended_total{reason="client_gone"}`:                                         1,
		`switchboard_auth_webhook_duration_seconds_count{result="refused"}`:                             1,
		`switchboard_auth_webhook_duration_seconds_count{result="unavailable"}`:                         1,
		"switchboard_auth_webhook_failures_total":                                                       1,
		`switchboard_limit_refusals_total{limit="MAX_BODY_BYTES"}`:                                      2,
		`switchboard_limit_refusals_total{limit="MAX_RECORD_BYTES"}`:                                    1,
		`switchboard_rpc_call_duration_seconds_count{outcome="ok"}`:                                     1,
		`switchboard_http_request_duration_seconds_count{method="POST",route="/rpc/*",status="200"}`:    1,
		`switchboard_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}`:  1,
		`switchboard_http_request_duration_seconds_count{method="GET",route="/records/*",status="404"}`: 1,
		`switchboard_http_request_duration_seconds_count{method="PUT",route="/records/*",status="201"}`: 2,
		`switchboard_http_request_duration_seconds_count{method="PUT",route="/records/*",status="200"}`: 2,
	} {
		if got := after[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"switchboard_frames_sent_total", "switchboard_frames_dropped_total", "switchboard_delivery_lag_seconds_count"} {
		if after[name] <= before[name] {
			t.Errorf("%s did not move: %v then %v", name, before[name], after[name])
		}
	}
	if after["switchboard_frames_sent_total"] < 8 || after["switchboard_delivery_lag_seconds_count"] < 6 {
		t.Errorf("frames sent %v, lag observations %v; want at least the 8 frames and 6 changes of the workload",
			after["switchboard_frames_sent_total"], after["switchboard_delivery_lag_seconds_count"])
	}
	for name := range after {
		if strings.Contains(name, "secret") || strings.Contains(name, "obs/") {
			t.Errorf("a label holds a raw path or a name: %s", name)
		}
	}
}

// slowConsumer opens a stream that never reads and publishes until the
// server cuts it as too slow.
func slowConsumer(t *testing.T, srv *testServer) {
	t.Helper()
	host := strings.TrimPrefix(srv.URL, "http://")
	slow, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(slow, "GET /stream?event=obs-big HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", host)
	waitSample(t, srv.URL, "switchboard_streams_open", 2)
	payload := `"` + strings.Repeat("x", 16<<10) + `"`
	for i := 0; metrics(t, srv.URL)["switchboard_slow_disconnects_total"] == 0; i++ {
		if i == 100 {
			t.Fatal("a stream that reads nothing was not cut after 32 MB of events")
		}
		for range 20 {
			publishEvent(t, srv.URL, "obs-big", payload)
		}
	}
}

// TestDebugAddr: DEBUG_ADDR serves pprof on its own listener; the public
// port never does.
func TestDebugAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := startServer(t, map[string]string{"DEBUG_ADDR": addr})
	if st, _, b := do(t, http.MethodGet, "http://"+addr+"/debug/pprof/goroutine?debug=1", "", ""); st != http.StatusOK || !strings.Contains(string(b), "goroutine") {
		t.Errorf("pprof on DEBUG_ADDR: %d %.200s", st, b)
	}
	if st, _, _ := do(t, http.MethodGet, srv.URL+"/debug/pprof/", "", ""); st != http.StatusNotFound {
		t.Errorf("pprof on the public port: %d, want 404", st)
	}
	srv.Stop(t)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the debug listener still accepts after the server stopped")
	}
}

// TestHelpAndVersion builds the command, with its VCS stamp where the
// checkout allows one, and runs "--help" (every command's usage, exit 0)
// and "version" (the module's version and the revision that the build
// recorded).
func TestHelpAndVersion(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.Command(goCmd, "build", "-buildvcs=auto", "-o", bin, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"migrate", "-h"}} {
		// A command's help must not run the command (serve would not end).
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, bin, args...).Output()
		cancel()
		arg := strings.Join(args, " ")
		if err != nil {
			t.Errorf("switchboard %s: %v", arg, err)
		}
		for _, cmd := range []string{"serve", "migrate", "rules check FILE", "rules test FILE CASES", "version"} {
			if !strings.Contains(string(out), "switchboard "+cmd) {
				t.Errorf("switchboard %s does not show %q:\n%s", arg, cmd, out)
			}
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("switchboard version: %v", err)
	}
	if !regexp.MustCompile(`^switchboard \S+ .*go1\.\d+`).Match(out) {
		t.Errorf("switchboard version printed %q, want the module's version and Go's", out)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "switchboard "+bi.Main.Version+" ") {
		t.Errorf("switchboard version printed %q, want the module's version %s", out, bi.Main.Version)
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && !strings.Contains(string(out), s.Value) {
			t.Errorf("switchboard version printed %q, want the revision %s", out, s.Value)
		}
	}
	if err := exec.Command(bin, "no-such-command").Run(); err == nil {
		t.Error("an unknown command exited 0")
	}
}
