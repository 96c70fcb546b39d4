package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRPCProviderDies: a provider takes a request and never answers; after
// RPC_ACK_TIMEOUT the second provider gets it and answers; the requester
// gets exactly that answer; the first provider's late answer is 404.
func TestRPCProviderDies(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"RPC_ACK_TIMEOUT": "1s"})
	registerProvider(t, srv.URL, "job", "dead")
	res := rpcCall(t, context.Background(), srv.URL, "job", `"work"`)
	start := time.Now() // before the claim, which starts the ack timeout
	taken := rpcPollOne(t, srv.URL, "name=job&provider=dead")
	second := rpcPollOne(t, srv.URL, "name=job&provider=alive")
	if waited := time.Since(start); waited < 800*time.Millisecond {
		t.Fatalf("the second provider got the request after %v, before the first one's ack timeout", waited)
	}
	if second.ID == taken.ID || string(second.Data) != `"work"` {
		t.Fatalf("second provider got %+v (first had id %s)", second, taken.ID)
	}
	mustAnswer(t, srv.URL, second.ID, `{"data":"from alive"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"from alive"` {
		t.Fatalf("requester got %v", got)
	}
	if st, b := rpcAnswer(t, srv.URL, taken.ID, `{"data":"from the dead"}`); st != http.StatusNotFound {
		t.Fatalf("late answer of the presumed-dead provider: %d %s", st, b)
	}
	// It does not get the request again either.
	if st, _ := rpcPoll(t, srv.URL, "name=job&provider=dead&wait=0s"); st != http.StatusNoContent {
		t.Fatalf("the dead provider polls again: %d", st)
	}
}

// TestRPCDeadEnd: the only provider takes a request and never answers;
// once its RPC_ACK_TIMEOUT has passed no provider that has not had the
// request is left, and the requester gets 503 NO_RPC_PROVIDER then, not
// 504 RPC_TIMEOUT at the end of its 30s.
func TestRPCDeadEnd(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"RPC_ACK_TIMEOUT": "300ms"})
	registerProvider(t, srv.URL, "x", "p1")
	res := rpcCall(t, context.Background(), srv.URL, "x?timeout=30s", `1`)
	rpcPollOne(t, srv.URL, "name=x&provider=p1")
	got := waitResult(t, res)
	wantCode(t, got, http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
	if got.Elapsed < 300*time.Millisecond || got.Elapsed > 10*time.Second {
		t.Fatalf("got %v, want it once the ack timeout of 300ms has passed, long before the call's 30s", got)
	}
	if !strings.Contains(string(got.Body), "did not answer within 300ms") {
		t.Fatalf("detail: %s", got.Body)
	}
}

// TestRPCLateAnswer: an answer after the ack timeout is 404 and never
// reaches the requester, who has got 503 NO_RPC_PROVIDER: no other
// provider was left.
func TestRPCLateAnswer(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"RPC_ACK_TIMEOUT": "1s"})
	registerProvider(t, srv.URL, "late", "p1")
	res := rpcCall(t, context.Background(), srv.URL, "late?timeout=3s", `1`)
	req := rpcPollOne(t, srv.URL, "name=late&provider=p1")
	time.Sleep(1200 * time.Millisecond)
	if st, b := rpcAnswer(t, srv.URL, req.ID, `{"data":"late"}`); st != http.StatusNotFound || !strings.Contains(string(b), "NOT_FOUND") {
		t.Fatalf("late answer: %d %s", st, b)
	}
	wantCode(t, waitResult(t, res), http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
}

// TestRPCMaxAttempts: after RPC_MAX_ATTEMPTS providers took a request and
// died, the requester gets 504 RPC_TIMEOUT at once, long before its own
// timeout, though a third provider polls, and that one never gets it.
// With no provider left when the last one dies, that is 503 (as at every
// presumed death: TestRPCDeadEnd).
func TestRPCMaxAttempts(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"RPC_ACK_TIMEOUT": "500ms", "RPC_MAX_ATTEMPTS": "2"})
	for _, p := range []string{"p1", "p2"} {
		registerProvider(t, srv.URL, "flaky", p)
	}
	res := rpcCall(t, context.Background(), srv.URL, "flaky?timeout=30s", `1`)
	rpcPollOne(t, srv.URL, "name=flaky&provider=p1")
	rpcPollOne(t, srv.URL, "name=flaky&provider=p2")
	third := make(chan int, 1)
	go func() { st, _ := rpcPoll(t, srv.URL, "name=flaky&provider=p3&wait=5s"); third <- st }()
	got := waitResult(t, res)
	wantCode(t, got, http.StatusGatewayTimeout, "RPC_TIMEOUT")
	if got.Elapsed > 5*time.Second || !strings.Contains(string(got.Body), "2 providers") {
		t.Fatalf("after 2 dead providers: %v", got)
	}
	if st := <-third; st != http.StatusNoContent {
		t.Fatalf("a third provider polled: %d, want 204", st)
	}

	registerProvider(t, srv.URL, "flaky", "p1")
	res = rpcCall(t, context.Background(), srv.URL, "flaky?timeout=30s", `2`)
	rpcPollOne(t, srv.URL, "name=flaky&provider=p1")
	rpcPollOne(t, srv.URL, "name=flaky&provider=p2")
	got = waitResult(t, res)
	wantCode(t, got, http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
	if got.Elapsed < time.Second {
		t.Fatalf("503 after %v, before the two leases of 500ms ran out", got.Elapsed)
	}
}

// TestRPCRejectChain: a reject hands the request to a provider that has not
// had it; after the third of three providers rejects it, the requester
// gets 503 NO_RPC_PROVIDER. A provider that rejected never sees it again.
func TestRPCRejectChain(t *testing.T) {
	srv := startRPCServer(t, nil)
	providers := []string{"p1", "p2", "p3"}
	for _, p := range providers {
		registerProvider(t, srv.URL, "picky", p)
	}
	res := rpcCall(t, context.Background(), srv.URL, "picky", `{"q":1}`)
	seen := map[string]bool{}
	for _, p := range providers {
		req := rpcPollOne(t, srv.URL, "name=picky&provider="+p)
		if seen[req.ID] {
			t.Fatalf("%s got a claim id already used: %s", p, req.ID)
		}
		seen[req.ID] = true
		mustAnswer(t, srv.URL, req.ID, `{"reject": true}`)
		if st, b := rpcAnswer(t, srv.URL, req.ID, `{"data": 1}`); st != http.StatusNotFound {
			t.Fatalf("answer after a reject: %d %s", st, b)
		}
		if st, _ := rpcPoll(t, srv.URL, "name=picky&wait=0s&provider="+p); st != http.StatusNoContent {
			t.Fatalf("%s got the request it rejected again", p)
		}
	}
	got := waitResult(t, res)
	wantCode(t, got, http.StatusServiceUnavailable, "NO_RPC_PROVIDER")
	if !strings.Contains(string(got.Body), "rejected") {
		t.Fatalf("detail: %s", got.Body)
	}
}

// TestRPCRequesterLeaves: a requester that disconnects frees its request:
// a pending one is never handed out, a claimed one can no longer be
// answered (404).
func TestRPCRequesterLeaves(t *testing.T) {
	srv := startRPCServer(t, nil)
	registerProvider(t, srv.URL, "gone", "p1")
	ctx, cancel := context.WithCancel(context.Background())
	res := rpcCall(t, ctx, srv.URL, "gone", `"pending"`)
	waitSample(t, srv.URL, "switchboard_rpc_calls_waiting", 1) // the call is queued
	cancel()
	<-res
	waitSample(t, srv.URL, "switchboard_rpc_calls_waiting", 0) // the server sees the hang-up
	if st, reqs := rpcPoll(t, srv.URL, "name=gone&provider=p1&wait=300ms"); st != http.StatusNoContent {
		t.Fatalf("a provider got the request of a requester that left: %d %+v", st, reqs)
	}

	ctx, cancel = context.WithCancel(context.Background())
	res = rpcCall(t, ctx, srv.URL, "gone", `"claimed"`)
	req := rpcPollOne(t, srv.URL, "name=gone&provider=p1")
	cancel()
	<-res
	time.Sleep(200 * time.Millisecond) // the server sees the hang-up
	if st, b := rpcAnswer(t, srv.URL, req.ID, `{"data": "nobody listens"}`); st != http.StatusNotFound {
		t.Fatalf("answer after the requester left: %d %s", st, b)
	}
}

// TestRPCShutdown: on shutdown a long poll ends at once (204), a waiting
// call gets 503 UNAVAILABLE after RPC_ACK_TIMEOUT (the time an answer
// under way has to come), and the server stops in time.
func TestRPCShutdown(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"RPC_ACK_TIMEOUT": "1s"})
	polled := make(chan int, 1)
	go func() {
		st, _ := rpcPoll(t, srv.URL, "name=drain&wait=60s")
		polled <- st
	}()
	registerProvider(t, srv.URL, "unanswered", "p1")
	called := rpcCall(t, context.Background(), srv.URL, "unanswered?timeout=60s", `1`)
	waitSample(t, srv.URL, "switchboard_rpc_polls_waiting", 1) // the poll and the call wait
	waitSample(t, srv.URL, "switchboard_rpc_calls_waiting", 1)
	start := time.Now()
	srv.Stop(t)
	select {
	case st := <-polled:
		if st != http.StatusNoContent {
			t.Fatalf("poll at shutdown: %d, want 204", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not end at shutdown")
	}
	got := waitResult(t, called)
	wantCode(t, got, http.StatusServiceUnavailable, "UNAVAILABLE")
	if d := time.Since(start); d > 9*time.Second { // within SHUTDOWN_TIMEOUT (10 s), with the race detector on a busy machine
		t.Fatalf("shutdown took %v", d)
	}
}
