package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// The limits of API.md's table that the other files do not test: each
// reached, and answered with its own status, code and headers.
// (MAX_SUBSCRIPTIONS_PER_STREAM: streamlimits_test.go; MAX_RECORD_BYTES:
// limits_test.go; MAX_COLLECTION_RECORDS: collection_test.go.)

// refusal checks an answer's status, code and Retry-After (0: none), and
// that it is problem+json.
func refusal(t *testing.T, what string, st int, h http.Header, b []byte, status int, code string, retryAfter bool) {
	t.Helper()
	var p struct{ Code string }
	json.Unmarshal(b, &p)
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	if st != status || p.Code != code || h.Get("Content-Type") != "application/problem+json" || retryAfter != (err == nil && secs >= 1) {
		t.Fatalf("%s: %d %s Retry-After %q %s, want %d %s (Retry-After: %v)", what, st, h.Get("Content-Type"), h.Get("Retry-After"), b, status, code, retryAfter)
	}
}

// limitEnv is an open-mode server that also verifies tokens, with env.
func limitEnv(kv ...string) map[string]string {
	env := map[string]string{"JWT_SECRET": authSecret}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// TestRateLimit: past RATE_LIMIT (0.5/s: a burst of one, then one every
// 2 s), a caller gets 429 RATE_LIMITED with Retry-After; a signed-in user
// has a bucket of their own wherever they come from, anonymous callers
// one per address; the probes are never limited.
func TestRateLimit(t *testing.T) {
	srv := startServer(t, limitEnv("RATE_LIMIT", "0.5"))
	get := func(headers ...string) (int, http.Header, []byte) {
		return do(t, http.MethodGet, srv.URL+"/records/doc", "", "", headers...)
	}
	if st, _, b := get(); st != http.StatusNotFound {
		t.Fatalf("first anonymous request: %d %s", st, b)
	}
	st, h, b := get()
	refusal(t, "second anonymous request", st, h, b, http.StatusTooManyRequests, "RATE_LIMITED", true)
	if secs, _ := strconv.Atoi(h.Get("Retry-After")); secs > 2 {
		t.Errorf("Retry-After %d, want at most 2 (one token every 2 s)", secs)
	}
	st, h, b = do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `1`)
	refusal(t, "an anonymous write", st, h, b, http.StatusTooManyRequests, "RATE_LIMITED", true)
	if st, _, _ := get(); st != http.StatusTooManyRequests {
		t.Fatal("a refused request gave its caller a token")
	}
	token := "Bearer " + signToken(t, "alice", time.Hour)
	if st, _, b := get("Authorization", token); st != http.StatusNotFound {
		t.Fatalf("alice, from the same address: %d %s", st, b)
	}
	st, h, b = get("Authorization", token)
	refusal(t, "alice's second request", st, h, b, http.StatusTooManyRequests, "RATE_LIMITED", true)
	if st, _, b := get("Authorization", "Bearer "+signToken(t, "bob", time.Hour)); st != http.StatusNotFound {
		t.Fatalf("bob: %d %s", st, b)
	}
	for _, probe := range []string{"/healthz", "/readyz", "/metrics"} {
		for range 3 {
			if st, _, _ := do(t, http.MethodGet, srv.URL+probe, "", ""); st != http.StatusOK {
				t.Fatalf("GET %s: %d", probe, st)
			}
		}
	}
	_, _, metrics := do(t, http.MethodGet, srv.URL+"/metrics", "", "")
	if n := metricValue(string(metrics), `switchboard_limit_refusals_total{limit="RATE_LIMIT"}`); n != 4 {
		t.Errorf("limit refusals of RATE_LIMIT: %v, want the 4 refused requests", n)
	}
}

// TestRateLimitTrustProxy: behind a proxy (TRUST_PROXY=true) anonymous
// callers count by Fly-Client-IP, else by the last X-Forwarded-For
// address; without it (the default) those headers, which any client can
// send, change nothing.
func TestRateLimitTrustProxy(t *testing.T) {
	for _, trust := range []bool{true, false} {
		t.Run("TRUST_PROXY="+strconv.FormatBool(trust), func(t *testing.T) {
			env := limitEnv("RATE_LIMIT", "0.5")
			if trust {
				env["TRUST_PROXY"] = "true"
			}
			srv := startServer(t, env)
			get := func(headers ...string) int {
				st, _, _ := do(t, http.MethodGet, srv.URL+"/records/doc", "", "", headers...)
				return st
			}
			first := get("Fly-Client-IP", "203.0.113.1")
			others := []int{
				get("Fly-Client-IP", "203.0.113.2"),
				get("X-Forwarded-For", "203.0.113.1, 198.51.100.3"),
				get("X-Forwarded-For", "198.51.100.4"),
			}
			again := get("Fly-Client-IP", "203.0.113.1")
			if first != http.StatusNotFound || again != http.StatusTooManyRequests {
				t.Fatalf("the same client twice: %d then %d, want 404 then 429", first, again)
			}
			for i, st := range others {
				want := http.StatusTooManyRequests // one address: the connection's
				if trust {
					want = http.StatusNotFound // each its own address
				}
				if st != want {
					t.Errorf("other client %d: %d, want %d", i, st, want)
				}
			}
		})
	}
}

// TestMaxStreamsPerUser: a signed-in user holds at most
// MAX_STREAMS_PER_USER open streams on an instance (429 LIMIT_EXCEEDED);
// other users and anonymous streams are not counted against them; one
// closed, the user may open another.
func TestMaxStreamsPerUser(t *testing.T) {
	srv := startServer(t, limitEnv("MAX_STREAMS_PER_USER", "2"))
	alice := srv.URL + "/stream?event=e&access_token=" + signToken(t, "alice", time.Hour)
	first := openSSE(t, alice, "")
	first.Expect(t, "ready")
	openSSE(t, alice, "").Expect(t, "ready")
	st, h, b := getStream(t, alice)
	refusal(t, "alice's third stream", st, h, b, http.StatusTooManyRequests, "LIMIT_EXCEEDED", false)
	openSSE(t, srv.URL+"/stream?event=e&access_token="+signToken(t, "bob", time.Hour), "").Expect(t, "ready")
	for range 3 {
		openSSE(t, srv.URL+"/stream?event=e", "").Expect(t, "ready")
	}

	first.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := testkit.Dial(alice, "")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's stream after she closed one: %v", err)
		}
	}
}

// TestMaxStreams: past MAX_STREAMS, a stream of anyone is 503 UNAVAILABLE
// with Retry-After, so that a load balancer tries another instance; other
// requests go on.
func TestMaxStreams(t *testing.T) {
	srv := startServer(t, limitEnv("MAX_STREAMS", "2"))
	openSSE(t, srv.URL+"/stream?event=e", "").Expect(t, "ready")
	openSSE(t, srv.URL+"/stream?event=e&access_token="+signToken(t, "alice", time.Hour), "").Expect(t, "ready")
	st, h, b := getStream(t, srv.URL+"/stream?event=e")
	refusal(t, "a third stream", st, h, b, http.StatusServiceUnavailable, "UNAVAILABLE", true)
	st, h, b = getStream(t, srv.URL+"/records/doc")
	refusal(t, "a record's stream", st, h, b, http.StatusServiceUnavailable, "UNAVAILABLE", true)
	if st, _, b := do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `1`); st != http.StatusCreated {
		t.Fatalf("a write while the streams are full: %d %s", st, b)
	}
}

// TestMaxRPCInFlightPerUser: a user has at most MAX_RPC_IN_FLIGHT_PER_USER
// calls waiting for their answers (429 LIMIT_EXCEEDED); another user is
// not counted against them; answered, the user may call again.
func TestMaxRPCInFlightPerUser(t *testing.T) {
	srv := startRPCServer(t, limitEnv("MAX_RPC_IN_FLIGHT_PER_USER", "2"))
	registerProvider(t, srv.URL, "slow", "p1")
	// POST takes no ?access_token: the calls carry the header.
	callAs := func(user string) <-chan rpcResult {
		out := make(chan rpcResult, 1)
		go func() {
			start := time.Now()
			st, _, b := do(t, http.MethodPost, srv.URL+"/rpc/slow?timeout=20s", "application/json", `{}`,
				"Authorization", "Bearer "+signToken(t, user, time.Hour))
			out <- rpcResult{st, b, time.Since(start)}
		}()
		return out
	}
	a1, a2 := callAs("alice"), callAs("alice")
	var ids []string
	for len(ids) < 2 {
		ids = append(ids, rpcPollOne(t, srv.URL, "name=slow&provider=p1").ID)
	}
	st, h, b := do(t, http.MethodPost, srv.URL+"/rpc/slow?timeout=20s", "application/json", `{}`,
		"Authorization", "Bearer "+signToken(t, "alice", time.Hour))
	refusal(t, "alice's third call", st, h, b, http.StatusTooManyRequests, "LIMIT_EXCEEDED", false)
	bob := callAs("bob")
	mustAnswer(t, srv.URL, rpcPollOne(t, srv.URL, "name=slow&provider=p1").ID, `{"data":"bob"}`)
	if r := waitResult(t, bob); r.Status != http.StatusOK {
		t.Fatalf("bob's call: %v", r)
	}
	for _, id := range ids {
		mustAnswer(t, srv.URL, id, `{"data":1}`)
	}
	for _, c := range []<-chan rpcResult{a1, a2} {
		if r := waitResult(t, c); r.Status != http.StatusOK {
			t.Fatalf("alice's call: %v", r)
		}
	}
	again := callAs("alice")
	mustAnswer(t, srv.URL, rpcPollOne(t, srv.URL, "name=slow&provider=p1").ID, `{"data":2}`)
	if r := waitResult(t, again); r.Status != http.StatusOK {
		t.Fatalf("alice's call once the others were answered: %v", r)
	}
}
