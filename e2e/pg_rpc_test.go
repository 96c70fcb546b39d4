package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// The TestPGRPC tests run the RPC tests' requests (rpc_test.go) across two
// instances on one Postgres database: the requester calls instance A, the
// provider polls and answers on instance B, and the queue, the provider
// registry and the wake-ups (NOTIFY) are all they share.

// pgRPCPair starts two servers on one fresh database, with env.
func pgRPCPair(t *testing.T, env map[string]string) (a, b *testServer) {
	t.Helper()
	s := pgRPCServers(t, 2, env)
	return s[0], s[1]
}

// pgRPCServers starts n servers on one fresh database, with env, and waits
// until every one is ready (its notification listener connected), as a
// load balancer would before routing to it.
func pgRPCServers(t testing.TB, n int, env map[string]string) []*testServer {
	t.Helper()
	vars := map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)}
	for k, v := range env {
		vars[k] = v
	}
	servers := make([]*testServer, n)
	for i := range servers {
		servers[i] = startRPCServer(t, vars)
	}
	for _, s := range servers {
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, _ := rpcSend(t, context.Background(), http.MethodGet, s.URL+"/readyz", "")
			if st == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/readyz answered %d for 30s", s.URL, st)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	return servers
}

// TestPGRPCAnswerAcrossInstances: a provider long-polling on B gets a call
// made on A, with its input, and its answer (posted to B, or to A: any
// instance takes answers) reaches the requester on A once; an error answer
// is 502 RPC_ERROR with the provider's message.
func TestPGRPCAnswerAcrossInstances(t *testing.T) {
	a, b := pgRPCPair(t, nil)
	registerProvider(t, b.URL, "math/add-two", "p1")
	polled := make(chan []rpcRequest, 1)
	go func() {
		_, reqs := rpcPoll(t, b.URL, "name=other&name=math/add-two&wait=10s&provider=p1")
		polled <- reqs
	}()
	waitSample(t, b.URL, "switchboard_rpc_polls_waiting", 1) // the poll waits on B when the call comes to A
	res := rpcCall(t, context.Background(), a.URL, "math/add-two?timeout=20s", ` {"n": 3} `)
	var reqs []rpcRequest
	select {
	case reqs = <-polled:
	case <-time.After(10 * time.Second):
		t.Fatal("the poll on B did not return with the call made on A")
	}
	if len(reqs) != 1 || reqs[0].Name != "math/add-two" || string(reqs[0].Data) != `{"n":3}` || reqs[0].ID == "" {
		t.Fatalf("provider on B got %+v", reqs)
	}
	mustAnswer(t, b.URL, reqs[0].ID, `{"data": {"sum": 5}}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `{"sum":5}` {
		t.Fatalf("requester on A got %v", got)
	}
	for _, srv := range []*testServer{a, b} {
		if st, body := rpcAnswer(t, srv.URL, reqs[0].ID, `{"data": 6}`); st != http.StatusNotFound {
			t.Fatalf("a second answer through %s: %d %s, want 404", srv.URL, st, body)
		}
	}

	// The provider polls on B and answers through A.
	res = rpcCall(t, context.Background(), a.URL, "math/add-two", `{"n": 4}`)
	req := rpcPollOne(t, b.URL, "name=math/add-two&provider=p1")
	mustAnswer(t, a.URL, req.ID, `{"data": 6}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `6` {
		t.Fatalf("answer through A: requester got %v", got)
	}

	res = rpcCall(t, context.Background(), a.URL, "math/add-two", `{}`)
	req = rpcPollOne(t, b.URL, "name=math/add-two&provider=p1")
	mustAnswer(t, b.URL, req.ID, `{"error": "division by zero: \"x\""}`)
	got := waitResult(t, res)
	wantCode(t, got, http.StatusBadGateway, "RPC_ERROR")
	var p struct{ Detail string }
	json.Unmarshal(got.Body, &p)
	if p.Detail != `division by zero: "x"` {
		t.Fatalf("detail %q, want the provider's message", p.Detail)
	}
}

// TestPGRPCRejectAcrossInstances: a reject on B hands the request to a
// provider on A that has not had it; when the providers of both instances
// have rejected it, the requester gets 503 NO_RPC_PROVIDER.
func TestPGRPCRejectAcrossInstances(t *testing.T) {
	a, b := pgRPCPair(t, nil)
	registerProvider(t, b.URL, "picky", "on-b")
	registerProvider(t, a.URL, "picky", "on-a")

	res := rpcCall(t, context.Background(), a.URL, "picky", `{"q":1}`)
	first := rpcPollOne(t, b.URL, "name=picky&provider=on-b")
	mustAnswer(t, b.URL, first.ID, `{"reject": true}`)
	if st, _ := rpcPoll(t, b.URL, "name=picky&wait=0s&provider=on-b"); st != http.StatusNoContent {
		t.Fatalf("on-b got the request it rejected again: %d", st)
	}
	second := rpcPollOne(t, a.URL, "name=picky&provider=on-a")
	if second.ID == first.ID || string(second.Data) != `{"q":1}` {
		t.Fatalf("on-a got %+v after on-b rejected claim %s", second, first.ID)
	}
	if st, body := rpcAnswer(t, a.URL, first.ID, `{"data": "from on-b"}`); st != http.StatusNotFound {
		t.Fatalf("answer to the rejected claim: %d %s", st, body)
	}
	mustAnswer(t, a.URL, second.ID, `{"data": "from on-a"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"from on-a"` {
		t.Fatalf("requester got %v", got)
	}

	res = rpcCall(t, context.Background(), b.URL, "picky", `{"q":2}`)
	mustAnswer(t, b.URL, rpcPollOne(t, b.URL, "name=picky&provider=on-b").ID, `{"reject": true}`)
	mustAnswer(t, a.URL, rpcPollOne(t, a.URL, "name=picky&provider=on-a").ID, `{"reject": true}`)
	got := waitResult(t, res)
	wantCode(t, got, http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
	if !strings.Contains(string(got.Body), "rejected") {
		t.Fatalf("detail: %s", got.Body)
	}
}

// TestPGRPCFailoverAcrossInstances: a provider on B takes a request made
// on A and dies; after RPC_ACK_TIMEOUT a provider on A gets it, and the
// requester gets that answer alone: the dead provider's late answer is
// 404. Then instance B itself goes away while its provider holds a
// request: A ends the lease that B handed out, and A's provider answers.
func TestPGRPCFailoverAcrossInstances(t *testing.T) {
	a, b := pgRPCPair(t, map[string]string{"RPC_ACK_TIMEOUT": "1s"})
	registerProvider(t, b.URL, "job", "dead")
	res := rpcCall(t, context.Background(), a.URL, "job?timeout=15s", `"work"`)
	start := time.Now() // before the claim, which starts the ack timeout
	taken := rpcPollOne(t, b.URL, "name=job&provider=dead")
	second := rpcPollOne(t, a.URL, "name=job&provider=alive")
	if waited := time.Since(start); waited < 800*time.Millisecond {
		t.Fatalf("the provider on A got the request after %v, before the first one's ack timeout", waited)
	}
	if second.ID == taken.ID || string(second.Data) != `"work"` {
		t.Fatalf("provider on A got %+v (the one on B had claim %s)", second, taken.ID)
	}
	mustAnswer(t, a.URL, second.ID, `{"data": "from alive"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"from alive"` {
		t.Fatalf("requester got %v", got)
	}
	if st, body := rpcAnswer(t, b.URL, taken.ID, `{"data": "from the dead"}`); st != http.StatusNotFound {
		t.Fatalf("late answer of the presumed-dead provider: %d %s", st, body)
	}
	if st, _ := rpcPoll(t, b.URL, "name=job&provider=dead&wait=0s"); st != http.StatusNoContent {
		t.Fatalf("the presumed-dead provider got the request again: %d", st)
	}

	// Instance B stops while its provider holds a request: nobody on B is
	// left to end the lease it handed out; A's reaper does.
	res = rpcCall(t, context.Background(), a.URL, "job?timeout=15s", `"orphan"`)
	orphan := rpcPollOne(t, b.URL, "name=job&provider=on-b")
	// A's provider polls while B stops (which takes a second at least, a
	// drain's): it is the provider left when the lease runs out.
	start = time.Now()
	polled := make(chan rpcRequest, 1)
	go func() { polled <- rpcPollOne(t, a.URL, "name=job&provider=alive") }()
	waitSample(t, a.URL, "switchboard_rpc_polls_waiting", 1)
	b.Stop(t)
	req := <-polled
	if string(req.Data) != `"orphan"` {
		t.Fatalf("provider on A got %+v, want the request that B's provider held", req)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("the request came back after %v with an ack timeout of 1s", waited)
	}
	if st, body := rpcAnswer(t, a.URL, orphan.ID, `{"data": "from on-b"}`); st != http.StatusNotFound {
		t.Fatalf("answer to the claim of the stopped instance: %d %s", st, body)
	}
	mustAnswer(t, a.URL, req.ID, `{"data": "from A"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"from A"` {
		t.Fatalf("requester got %v", got)
	}
}

// TestPGRPCNoProvider: a call is 503 NO_RPC_PROVIDER at once when no
// provider of its name polled on any instance within its registration
// window; a poll on B registers its provider for the calls made on A for
// RPC_ACK_TIMEOUT after it ends, and no longer.
func TestPGRPCNoProvider(t *testing.T) {
	a, b := pgRPCPair(t, map[string]string{"RPC_ACK_TIMEOUT": "1s"})
	r := waitResult(t, rpcCall(t, context.Background(), a.URL, "nobody", `1`))
	wantCode(t, r, http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
	if r.Elapsed > time.Second {
		t.Fatalf("no provider: answered after %v, want at once", r.Elapsed)
	}

	registerProvider(t, b.URL, "grace", "p1")
	res := rpcCall(t, context.Background(), a.URL, "grace?timeout=5s", `"in grace"`)
	req := rpcPollOne(t, b.URL, "name=grace&provider=p1")
	mustAnswer(t, b.URL, req.ID, `{"data": "ok"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"ok"` {
		t.Fatalf("call within the grace: %v", got)
	}
	time.Sleep(1500 * time.Millisecond)
	wantCode(t, waitResult(t, rpcCall(t, context.Background(), a.URL, "grace", `1`)), http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
}
