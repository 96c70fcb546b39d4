package dbtest

import (
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

func rpcLeaseTests() []rpcTest {
	return []rpcTest{
		{"LateAnswer", testRPCLateAnswer},
		{"NotToTheSameProvider", testRPCNotToTheSameProvider},
		{"NoneLeft", testRPCLeaseNoneLeft},
		{"ToAProviderLeft", testRPCLeaseToAProviderLeft},
		{"MaxAttempts", testRPCMaxAttempts},
		{"AnswerRenews", testRPCAnswerRenews},
		{"Next", testRPCExpireNext},
	}
}

// A claim whose lease ran out cannot be answered, even before Expire; the
// request goes to another provider, whose answer is the one that counts.
func testRPCLateAnswer(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1", "p2")
	c := q.enqueue(t, q.call("a", "1"), 0)
	old := q.claimOne(t, "p1", 0, c)
	q.answerGone(t, old.ID, 1000, "the lease ended")
	q.notDone(t, c.ID)
	q.expire(t, 1000)
	r := q.claimOne(t, "p2", 1001, c)
	if r.ID == old.ID {
		t.Fatalf("the second claim has the first one's id %s", r.ID)
	}
	q.answerGone(t, old.ID, 1002, "the presumed-dead provider answers while another holds it")
	q.answer(t, r.ID, data(`"p2"`), 1003)
	q.answerGone(t, old.ID, 1004, "the presumed-dead provider answers after the request is done")
	q.take(t, c.ID, result(`"p2"`))
}

// A provider presumed dead does not get the same request again, though its
// registration still runs.
func testRPCNotToTheSameProvider(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1", "p2")
	c := q.enqueue(t, q.call("a", "1"), 0)
	q.claimOne(t, "p1", 0, c)
	q.expire(t, 1000)
	q.claimNone(t, "p1", 1001, "a")
	q.notDone(t, c.ID)
	q.claimOne(t, "p2", 1002, c)
}

// When a lease runs out and no provider that has not had the request is
// registered, the request is done with NO_RPC_PROVIDER at once, long
// before its deadline, as after a reject: its requester has nothing left
// to wait for. The provider presumed dead does not count, though its
// registration runs, nor does a registration that ended with the lease,
// nor a provider that rejected the request.
func testRPCLeaseNoneLeft(t *testing.T, q *rpcQueue) {
	if err := q.Register(t.Context(), "p2", []string{"a"}, q.at(1000)); err != nil {
		t.Fatal(err)
	}
	q.register(t, "a", "p1")
	c := q.enqueue(t, q.call("a", "1"), 0)
	q.claimOne(t, "p1", 0, c)
	q.expire(t, 999)
	q.notDone(t, c.ID)
	q.expire(t, 1000)
	q.take(t, c.ID, api.RPCResult{Code: api.CodeNoRPCProvider})

	// The last attempt's lease running out with nobody left is
	// NO_RPC_PROVIDER too (testRPCMaxAttempts: RPC_TIMEOUT while someone
	// is left).
	one := q.call("a", "2")
	one.MaxAttempts = 1
	q.enqueue(t, one, 2000)
	q.claimOne(t, "p1", 2000, one)
	q.expire(t, 3000)
	q.take(t, one.ID, api.RPCResult{Code: api.CodeNoRPCProvider})

	q.register(t, "a", "p3")
	c = q.enqueue(t, q.call("a", "3"), 4000)
	q.answer(t, q.claimOne(t, "p1", 4000, c).ID, api.RPCAnswer{Reject: true}, 4001)
	q.claimOne(t, "p3", 4002, c)
	q.expire(t, 5002)
	q.take(t, c.ID, api.RPCResult{Code: api.CodeNoRPCProvider})
}

// A provider registered beyond the end of a lease that has not had the
// request gets it when the lease runs out, even one that registered after
// the claim; once its own lease runs out too, nobody is left.
func testRPCLeaseToAProviderLeft(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	c := q.enqueue(t, q.call("a", "1"), 0)
	q.claimOne(t, "p1", 0, c)
	if err := q.Register(t.Context(), "p2", []string{"a"}, q.at(1001)); err != nil {
		t.Fatal(err)
	}
	q.expire(t, 1000)
	q.notDone(t, c.ID)
	q.claimOne(t, "p2", 1000, c)
	q.expire(t, 2000)
	q.take(t, c.ID, api.RPCResult{Code: api.CodeNoRPCProvider})
}

// After MaxAttempts leases ran out the request is done with RPC_TIMEOUT,
// though a provider that has not had it is left.
func testRPCMaxAttempts(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1", "p2", "p3")
	c := q.call("a", "1")
	c.MaxAttempts = 2
	q.enqueue(t, c, 0)
	q.claimOne(t, "p1", 0, c)
	if next := q.expire(t, 999); !next.Equal(q.at(1000)) {
		t.Fatalf("Expire before the lease ended returned next %v, want t0+1s", next)
	}
	q.claimNone(t, "p2", 999, "a")
	q.expire(t, 1000)
	q.claimOne(t, "p2", 1500, c)
	q.expire(t, 2500)
	q.take(t, c.ID, api.RPCResult{Code: api.CodeRPCTimeout})
	q.claimNone(t, "p3", 2501, "a")

	one := q.call("a", "2")
	one.MaxAttempts = 1
	q.enqueue(t, one, 3000)
	q.claimOne(t, "p3", 3000, one)
	q.expire(t, 4000)
	q.take(t, one.ID, api.RPCResult{Code: api.CodeRPCTimeout})
}

// Answering one request renews the leases of the provider's other claims;
// another provider's claims keep theirs.
func testRPCAnswerRenews(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1", "p2")
	c1 := q.enqueue(t, q.call("a", "1"), 0)
	c2 := q.enqueue(t, q.call("a", "2"), 0)
	c3 := q.enqueue(t, q.call("a", "3"), 0)
	got := q.claim(t, "p1", 2, 0, "a")
	if len(got) != 2 {
		t.Fatalf("claimed %s, want 2", briefRequests(got))
	}
	other := q.claimOne(t, "p2", 0, c3)
	q.answer(t, got[0].ID, data("1"), 800)
	if next := q.expire(t, 1000); !next.Equal(q.at(1800)) {
		t.Fatalf("next = %v, want t0+1.8s: the renewed lease", next)
	}
	q.answerGone(t, other.ID, 1001, "p2's lease was not renewed")
	q.answer(t, got[1].ID, data("2"), 1500)
	q.take(t, c1.ID, result("1"))
	q.take(t, c2.ID, result("2"))
	q.notDone(t, c3.ID)
}

// Expire says when the earliest running lease ends: zero without any.
func testRPCExpireNext(t *testing.T, q *rpcQueue) {
	if next := q.expire(t, 0); !next.IsZero() {
		t.Fatalf("next = %v on an empty queue, want zero", next)
	}
	q.register(t, "a", "p1", "p2")
	c1 := q.enqueue(t, q.call("a", "1"), 0)
	c2 := q.enqueue(t, q.call("a", "2"), 0)
	if next := q.expire(t, 1); !next.IsZero() {
		t.Fatalf("next = %v with pending requests only, want zero", next)
	}
	r1 := q.claimOne(t, "p1", 100, c1)
	q.claimOne(t, "p2", 300, c2)
	if next := q.expire(t, 500); !next.Equal(q.at(1100)) {
		t.Fatalf("next = %v, want t0+1.1s", next)
	}
	q.answer(t, r1.ID, data("1"), 600)
	if next := q.expire(t, 700); !next.Equal(q.at(1300)) {
		t.Fatalf("next = %v, want t0+1.3s", next)
	}
}
