package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The RPC tests drive a real server over HTTP, as curl would: providers
// long-poll GET /rpc-requests and answer with POST /rpc-requests/{id},
// requesters POST /rpc/{name}.

// rpcHTTP keeps enough idle connections for hundreds of concurrent calls.
var rpcHTTP = &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}

// startRPCServer starts a server and, before it stops, closes rpcHTTP's
// idle connections: the server's shutdown waits 5s for a connection that
// never carried a request, and a busy transport leaves such spares behind.
func startRPCServer(t testing.TB, env map[string]string) *testServer {
	srv := startServer(t, env)
	t.Cleanup(rpcHTTP.CloseIdleConnections)
	return srv
}

// rpcRequest is a request as GET /rpc-requests hands it out.
type rpcRequest struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Data      json.RawMessage `json:"data"`
	Deadline  time.Time       `json:"deadline"`
	Requester string          `json:"requester"`
}

// rpcSend sends a request and returns its status and body; it reports
// transport errors with t.Errorf, so that any goroutine may call it.
func rpcSend(t testing.TB, ctx context.Context, method, url, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, nil
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rpcHTTP.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			t.Errorf("%s %s: %v", method, url, err)
		}
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// rpcPoll long-polls with query and returns the status and the requests.
func rpcPoll(t testing.TB, base, query string) (int, []rpcRequest) {
	t.Helper()
	st, b := rpcSend(t, context.Background(), http.MethodGet, base+"/rpc-requests?"+query, "")
	var out struct{ Requests []rpcRequest }
	if st == http.StatusOK {
		if err := json.Unmarshal(b, &out); err != nil || len(out.Requests) == 0 {
			t.Errorf("poll %s: 200 %s", query, b)
		}
	}
	return st, out.Requests
}

// rpcPollOne polls (waiting up to 5s) and wants exactly one request.
func rpcPollOne(t testing.TB, base, query string) rpcRequest {
	t.Helper()
	st, reqs := rpcPoll(t, base, query+"&wait=5s")
	if st != http.StatusOK || len(reqs) != 1 {
		t.Fatalf("poll %s: %d with %d requests, want one", query, st, len(reqs))
	}
	return reqs[0]
}

// rpcAnswer answers a request and returns the status and body.
func rpcAnswer(t testing.TB, base, id, body string) (int, []byte) {
	t.Helper()
	return rpcSend(t, context.Background(), http.MethodPost, base+"/rpc-requests/"+id, body)
}

// mustAnswer answers and wants 204.
func mustAnswer(t testing.TB, base, id, body string) {
	t.Helper()
	if st, b := rpcAnswer(t, base, id, body); st != http.StatusNoContent {
		t.Fatalf("answer %s with %s: %d %s", id, body, st, b)
	}
}

// rpcResult is what a requester got.
type rpcResult struct {
	Status  int
	Body    []byte
	Elapsed time.Duration
}

// code returns the problem code of an error answer.
func (r rpcResult) code() string {
	var p struct{ Code string }
	json.Unmarshal(r.Body, &p)
	return p.Code
}

// data returns the data of a 200 answer, compact.
func (r rpcResult) data() string {
	var p struct{ Data json.RawMessage }
	json.Unmarshal(r.Body, &p)
	return string(p.Data)
}

func (r rpcResult) String() string { return fmt.Sprintf("%d %s after %v", r.Status, r.Body, r.Elapsed) }

// rpcCall calls name (path and query) with body in the background.
func rpcCall(t testing.TB, ctx context.Context, base, nameAndQuery, body string) <-chan rpcResult {
	out := make(chan rpcResult, 1)
	go func() {
		start := time.Now()
		st, b := rpcSend(t, ctx, http.MethodPost, base+"/rpc/"+nameAndQuery, body)
		out <- rpcResult{st, b, time.Since(start)}
	}()
	return out
}

// waitResult waits up to 15s for a requester's result.
func waitResult(t testing.TB, c <-chan rpcResult) rpcResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("the requester got no answer in 15s")
		return rpcResult{}
	}
}

// wantCode checks an error answer's status and code.
func wantCode(t testing.TB, r rpcResult, status int, code string) {
	t.Helper()
	if r.Status != status || r.code() != code {
		t.Fatalf("got %v, want %d %s", r, status, code)
	}
}

// registerProvider makes a provider known for name with a poll that
// returns at once.
func registerProvider(t testing.TB, base, name, provider string) {
	t.Helper()
	if st, _ := rpcPoll(t, base, "name="+name+"&wait=0s&provider="+provider); st != http.StatusNoContent {
		t.Fatalf("poll of %s for %s: %d, want 204", provider, name, st)
	}
}

// TestRPCRoundTrip: a provider long-polls before the call; it sees the
// input, the name (with '/'), the deadline and the requester; the
// requester gets its answer.
func TestRPCRoundTrip(t *testing.T) {
	srv := startRPCServer(t, nil)
	registerProvider(t, srv.URL, "math/add-two", "p1") // a call is taken from now on
	polled := make(chan []rpcRequest, 1)
	go func() {
		_, reqs := rpcPoll(t, srv.URL, "name=other&name=math/add-two&wait=10s&provider=p1")
		polled <- reqs
	}()
	waitSample(t, srv.URL, "switchboard_rpc_polls_waiting", 1) // the poll waits when the call comes
	start := time.Now()
	res := rpcCall(t, context.Background(), srv.URL, "math/add-two?timeout=20s", ` {"n": 3, "s":"\u00e9"} `)
	var reqs []rpcRequest
	select {
	case reqs = <-polled:
	case <-time.After(10 * time.Second):
		t.Fatal("the provider's poll did not return with the request")
	}
	if len(reqs) != 1 {
		t.Fatalf("poll returned %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Name != "math/add-two" || string(r.Data) != `{"n":3,"s":"\u00e9"}` || r.Requester != "" || r.ID == "" {
		t.Fatalf("provider got %+v", r)
	}
	if d := r.Deadline.Sub(start); d < 19*time.Second || d > 21*time.Second {
		t.Fatalf("deadline %v is %v after the call, want 20s", r.Deadline, d)
	}
	mustAnswer(t, srv.URL, r.ID, `{"data": {"sum": 5, "list": [1, null]}}`)
	got := waitResult(t, res)
	if got.Status != http.StatusOK || got.data() != `{"sum":5,"list":[1,null]}` {
		t.Fatalf("requester got %v", got)
	}
	// The answer counted once: again is 404.
	if st, b := rpcAnswer(t, srv.URL, r.ID, `{"data": 6}`); st != http.StatusNotFound || !strings.Contains(string(b), "NOT_FOUND") {
		t.Fatalf("second answer: %d %s", st, b)
	}
}

// TestRPCNoProvider: without a provider that polled within its
// registration window, a call is 503 at once; a poll registers its
// provider for RPC_ACK_TIMEOUT after it ends, even one cut short.
func TestRPCNoProvider(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"RPC_ACK_TIMEOUT": "1s"})
	r := waitResult(t, rpcCall(t, context.Background(), srv.URL, "nobody", `1`))
	wantCode(t, r, http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
	if r.Elapsed > time.Second || !strings.Contains(string(r.Body), `no provider for rpc \"nobody\"`) {
		t.Fatalf("no provider: %v", r)
	}

	// Within the grace after a poll, the call waits for the next poll.
	registerProvider(t, srv.URL, "grace", "p1")
	res := rpcCall(t, context.Background(), srv.URL, "grace?timeout=5s", `"in grace"`)
	req := rpcPollOne(t, srv.URL, "name=grace&provider=p1")
	mustAnswer(t, srv.URL, req.ID, `{"data":"ok"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"ok"` {
		t.Fatalf("call within the grace: %v", got)
	}

	// After the grace, nobody is registered.
	time.Sleep(1500 * time.Millisecond)
	wantCode(t, waitResult(t, rpcCall(t, context.Background(), srv.URL, "grace", `1`)), http.StatusServiceUnavailable, "NO_RPC_PROVIDER")

	// A provider that hangs up in the middle of a long poll is gone once
	// the grace has passed, not at the end of its wait.
	ctx, cancel := context.WithCancel(context.Background())
	registerProvider(t, srv.URL, "left", "lp") // as its long poll does, before /metrics counts it
	go rpcSend(t, ctx, http.MethodGet, srv.URL+"/rpc-requests?name=left&wait=60s&provider=lp", "")
	waitSample(t, srv.URL, "switchboard_rpc_polls_waiting", 1) // the poll waits
	cancel()
	wantCode(t, waitResult(t, rpcCall(t, context.Background(), srv.URL, "left?timeout=1ms", `1`)), http.StatusGatewayTimeout, "RPC_TIMEOUT")
	time.Sleep(1500 * time.Millisecond)
	wantCode(t, waitResult(t, rpcCall(t, context.Background(), srv.URL, "left", `1`)), http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
}

// TestRPCErrorAndTimeout: an error answer is 502 RPC_ERROR with the
// provider's message; no answer within ?timeout= is 504 RPC_TIMEOUT.
func TestRPCErrorAndTimeout(t *testing.T) {
	srv := startRPCServer(t, nil)
	registerProvider(t, srv.URL, "fails", "p1")
	res := rpcCall(t, context.Background(), srv.URL, "fails", `{}`)
	req := rpcPollOne(t, srv.URL, "name=fails&provider=p1")
	mustAnswer(t, srv.URL, req.ID, `{"error": "division by zero: \"x\""}`)
	got := waitResult(t, res)
	wantCode(t, got, http.StatusBadGateway, "RPC_ERROR")
	var p struct{ Detail string }
	json.Unmarshal(got.Body, &p)
	if p.Detail != `division by zero: "x"` {
		t.Fatalf("detail %q, want the provider's message", p.Detail)
	}

	registerProvider(t, srv.URL, "slow", "p1")
	got = waitResult(t, rpcCall(t, context.Background(), srv.URL, "slow?timeout=300ms", `1`))
	wantCode(t, got, http.StatusGatewayTimeout, "RPC_TIMEOUT")
	if got.Elapsed < 300*time.Millisecond || got.Elapsed > 3*time.Second {
		t.Fatalf("timed out after %v, want 300ms", got.Elapsed)
	}
	// The request timed out: it is gone, no provider gets it.
	if st, reqs := rpcPoll(t, srv.URL, "name=slow&wait=200ms"); st != http.StatusNoContent {
		t.Fatalf("poll after the timeout: %d %+v", st, reqs)
	}
}

// TestRPCPollWaitAndMax: a poll without work answers 204 after wait; max
// bounds how many requests one poll takes, oldest first.
func TestRPCPollWaitAndMax(t *testing.T) {
	srv := startRPCServer(t, nil)
	start := time.Now()
	if st, _ := rpcPoll(t, srv.URL, "name=idle&wait=300ms"); st != http.StatusNoContent {
		t.Fatalf("idle poll: %d", st)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("idle poll took %v, want 300ms", d)
	}
	registerProvider(t, srv.URL, "batch", "p1")
	var results []<-chan rpcResult
	for i := range 3 {
		results = append(results, rpcCall(t, context.Background(), srv.URL, "batch", fmt.Sprint(i)))
		// The calls run in goroutines: queue them in order. A call is
		// counted just before it is queued (a commit on the embedded store).
		waitSample(t, srv.URL, "switchboard_rpc_calls_waiting", float64(i+1))
		time.Sleep(50 * time.Millisecond)
	}
	_, first := rpcPoll(t, srv.URL, "name=batch&max=2&provider=p1")
	_, second := rpcPoll(t, srv.URL, "name=batch&max=2&provider=p1")
	all := append(first, second...)
	if len(first) != 2 || len(second) != 1 {
		t.Fatalf("polls with max=2 took %d then %d requests, want 2 then 1", len(first), len(second))
	}
	for i, r := range all {
		if string(r.Data) != fmt.Sprint(i) {
			t.Fatalf("request %d has data %s: not the oldest first", i, r.Data)
		}
		mustAnswer(t, srv.URL, r.ID, fmt.Sprintf(`{"data": %d}`, 10+i))
	}
	for i, c := range results {
		if got := waitResult(t, c); got.data() != fmt.Sprint(10+i) {
			t.Fatalf("call %d got %v", i, got)
		}
	}
}

// TestRPCConcurrentRequests: 2 providers serve 200 concurrent requests;
// each request is answered exactly once, with its own answer.
func TestRPCConcurrentRequests(t *testing.T) {
	srv := startRPCServer(t, nil)
	const requests = 200
	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	served := map[string]int{}     // by input
	byProvider := map[string]int{} // how many each served
	var providers sync.WaitGroup
	registerProvider(t, srv.URL, "echo", "p1")
	for _, p := range []string{"p1", "p2"} {
		providers.Go(func() {
			for ctx.Err() == nil {
				st, reqs := rpcPollCtx(t, ctx, srv.URL, "name=echo&wait=2s&max=7&provider="+p)
				if st != http.StatusOK {
					continue
				}
				for _, r := range reqs {
					mu.Lock()
					served[string(r.Data)]++
					byProvider[p]++
					mu.Unlock()
					if st, b := rpcAnswer(t, srv.URL, r.ID, fmt.Sprintf(`{"data":{"echo":%s,"by":%q}}`, r.Data, p)); st != http.StatusNoContent {
						t.Errorf("%s: answer: %d %s", p, st, b)
					}
				}
			}
		})
	}
	var calls sync.WaitGroup
	for i := range requests {
		calls.Go(func() {
			in := fmt.Sprintf(`{"i":%d}`, i)
			st, b := rpcSend(t, context.Background(), http.MethodPost, srv.URL+"/rpc/echo?timeout=30s", in)
			var out struct {
				Data struct{ Echo json.RawMessage }
			}
			if st != http.StatusOK || json.Unmarshal(b, &out) != nil || string(out.Data.Echo) != in {
				t.Errorf("call %d: %d %s, want its own echo", i, st, b)
			}
		})
	}
	calls.Wait()
	stop()
	providers.Wait()
	for i := range requests {
		if n := served[fmt.Sprintf(`{"i":%d}`, i)]; n != 1 {
			t.Errorf("request %d was served %d times", i, n)
		}
	}
	t.Logf("served by provider: %v", byProvider)
}

// rpcPollCtx is rpcPoll with a context.
func rpcPollCtx(t testing.TB, ctx context.Context, base, query string) (int, []rpcRequest) {
	st, b := rpcSend(t, ctx, http.MethodGet, base+"/rpc-requests?"+query, "")
	var out struct{ Requests []rpcRequest }
	if st == http.StatusOK {
		json.Unmarshal(b, &out)
	}
	return st, out.Requests
}
