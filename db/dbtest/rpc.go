package dbtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// rpcTest is one behaviour of the RPC queue, run on a queue of its own.
// t0 is the suite's clock: every time passed to the queue is t0 plus an
// offset, so nothing waits on the wall clock.
type rpcTest struct {
	name string
	run  func(t *testing.T, q *rpcQueue)
}

// RunRPC runs the conformance suite of api.RPCQueue against the queues
// that open returns, each new and empty, with the Bus on which it
// announces. Subtests run one after another.
//
// The queue must take every time from its arguments, never from its own
// clock: the suite moves time by hand, from a t0 near the wall clock.
func RunRPC(t *testing.T, open func(t *testing.T) (api.RPCQueue, api.Bus)) {
	groups := []struct {
		name  string
		tests []rpcTest
	}{
		{"Providers", rpcProviderTests()},
		{"Claims", rpcClaimTests()},
		{"Answers", rpcAnswerTests()},
		{"Leases", rpcLeaseTests()},
		{"Rejects", rpcRejectTests()},
		{"Requesters", rpcRequesterTests()},
		{"Wakes", rpcWakeTests()},
		{"Concurrency", rpcConcurrencyTests()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) {
					q, bus := open(t)
					tt.run(t, &rpcQueue{RPCQueue: q, bus: bus, t0: time.Now().UTC().Truncate(time.Millisecond)})
				})
			}
		})
	}
}

// rpcQueue is the queue under test with its Bus, its clock and helpers
// that stop the test on unexpected errors.
type rpcQueue struct {
	api.RPCQueue
	bus api.Bus
	t0  time.Time
	n   int
}

// The default shape of a test: a lease of 1s, deadlines 30s after t0.
const (
	lease    = time.Second
	deadline = 30 * time.Second
)

// at returns the time t0+ms milliseconds.
func (q *rpcQueue) at(ms int) time.Time { return q.t0.Add(time.Duration(ms) * time.Millisecond) }

// register registers providers of name until t0+10min.
func (q *rpcQueue) register(t *testing.T, name string, providers ...string) {
	t.Helper()
	for _, p := range providers {
		if err := q.Register(t.Context(), p, []string{name}, q.at(600_000)); err != nil {
			t.Fatalf("Register(%q, %q): %v", p, name, err)
		}
	}
}

// call returns a call of name with data, a new id, the default deadline
// and 3 attempts.
func (q *rpcQueue) call(name, data string) api.RPCCall {
	q.n++
	return api.RPCCall{
		ID:   fmt.Sprintf("req-%d", q.n),
		Name: name, Data: json.RawMessage(data), Requester: "alice",
		Deadline: q.t0.Add(deadline), MaxAttempts: 3,
	}
}

// enqueue enqueues c at t0+ms or stops the test.
func (q *rpcQueue) enqueue(t *testing.T, c api.RPCCall, ms int) api.RPCCall {
	t.Helper()
	if err := q.Enqueue(t.Context(), c, q.at(ms)); err != nil {
		t.Fatalf("Enqueue(%s %s) at +%dms: %v", c.ID, c.Name, ms, err)
	}
	return c
}

// claim claims for provider at t0+ms with the default lease, registering
// it until t0+10min.
func (q *rpcQueue) claim(t *testing.T, provider string, max, ms int, names ...string) []api.RPCRequest {
	t.Helper()
	got, err := q.Claim(t.Context(), api.RPCClaim{Provider: provider, Names: names, Max: max, Lease: lease, Until: q.at(600_000)}, q.at(ms))
	if err != nil {
		t.Fatalf("Claim(%s, %v) at +%dms: %v", provider, names, ms, err)
	}
	if len(got) > max {
		t.Fatalf("Claim(%s, max %d) returned %d requests", provider, max, len(got))
	}
	return got
}

// claimOne claims and wants exactly one request, with the data of c.
func (q *rpcQueue) claimOne(t *testing.T, provider string, ms int, c api.RPCCall) api.RPCRequest {
	t.Helper()
	got := q.claim(t, provider, 1, ms, c.Name)
	if len(got) != 1 || string(got[0].Data) != string(c.Data) {
		t.Fatalf("%s claimed %s at +%dms, want the request with data %s", provider, briefRequests(got), ms, c.Data)
	}
	return got[0]
}

// claimNone wants Claim to hand provider nothing.
func (q *rpcQueue) claimNone(t *testing.T, provider string, ms int, names ...string) {
	t.Helper()
	if got := q.claim(t, provider, 10, ms, names...); len(got) > 0 {
		t.Fatalf("%s claimed %s at +%dms, want nothing", provider, briefRequests(got), ms)
	}
}

// answer answers the claim id at t0+ms or stops the test.
func (q *rpcQueue) answer(t *testing.T, id string, a api.RPCAnswer, ms int) {
	t.Helper()
	if err := q.Answer(t.Context(), id, a, q.at(ms)); err != nil {
		t.Fatalf("Answer(%s, %+v) at +%dms: %v", id, a, ms, err)
	}
}

// answerGone wants Answer to say NOT_FOUND.
func (q *rpcQueue) answerGone(t *testing.T, id string, ms int, why string) {
	t.Helper()
	err := q.Answer(t.Context(), id, api.RPCAnswer{Data: json.RawMessage(`"late"`)}, q.at(ms))
	if !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("Answer(%s) at +%dms (%s) = %v, want NOT_FOUND", id, ms, why, err)
	}
}

// take wants the request done with want.
func (q *rpcQueue) take(t *testing.T, id string, want api.RPCResult) {
	t.Helper()
	got, ok, err := q.Take(t.Context(), id)
	if err != nil || !ok {
		t.Fatalf("Take(%s) = %+v, %v, %v; want the result %s", id, got, ok, err, briefResult(want))
	}
	if string(got.Data) != string(want.Data) || got.Code != want.Code || (want.Message != "" && got.Message != want.Message) {
		t.Fatalf("Take(%s) = %s, want %s", id, briefResult(got), briefResult(want))
	}
}

// notDone wants the request to exist and not be done.
func (q *rpcQueue) notDone(t *testing.T, id string) {
	t.Helper()
	if got, ok, err := q.Take(t.Context(), id); err != nil || ok {
		t.Fatalf("Take(%s) = %s, %v, %v; want a request that is not done yet", id, briefResult(got), ok, err)
	}
}

// gone wants Take to say NOT_FOUND.
func (q *rpcQueue) gone(t *testing.T, id string) {
	t.Helper()
	if got, ok, err := q.Take(t.Context(), id); !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("Take(%s) = %s, %v, %v; want NOT_FOUND", id, briefResult(got), ok, err)
	}
}

// expire runs Expire at t0+ms and returns its next time.
func (q *rpcQueue) expire(t *testing.T, ms int) time.Time {
	t.Helper()
	next, err := q.Expire(t.Context(), q.at(ms))
	if err != nil {
		t.Fatalf("Expire at +%dms: %v", ms, err)
	}
	return next
}

func data(s string) api.RPCAnswer { return api.RPCAnswer{Data: json.RawMessage(s)} }

func result(s string) api.RPCResult { return api.RPCResult{Data: json.RawMessage(s)} }

func briefRequests(rs []api.RPCRequest) string {
	if len(rs) == 0 {
		return "nothing"
	}
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf("[%s %s %s] ", r.ID, r.Name, r.Data)
	}
	return s
}

func briefResult(r api.RPCResult) string {
	if r.Code != "" {
		return fmt.Sprintf("{%s %q}", r.Code, r.Message)
	}
	return fmt.Sprintf("{data %s}", r.Data)
}

func rpcProviderTests() []rpcTest {
	return []rpcTest{
		{"NoProvider", testRPCNoProvider},
		{"RegistrationEnds", testRPCRegistrationEnds},
		{"RegisterNeverShortens", testRPCRegisterNeverShortens},
		{"ClaimRegisters", testRPCClaimRegisters},
	}
}

// Without a registered provider of its name, a request is refused and
// nothing is queued.
func testRPCNoProvider(t *testing.T, q *rpcQueue) {
	c := q.call("add-two", "3")
	err := q.Enqueue(t.Context(), c, q.at(0))
	wantError(t, err, api.CodeNoRPCProvider)
	q.gone(t, c.ID)
	q.register(t, "other", "p1")
	wantError(t, q.Enqueue(t.Context(), c, q.at(0)), api.CodeNoRPCProvider)
	q.claimNone(t, "p1", 0, "add-two", "other")
}

// A registration lasts until its end, exclusive.
func testRPCRegistrationEnds(t *testing.T, q *rpcQueue) {
	if err := q.Register(t.Context(), "p1", []string{"a", "b"}, q.at(1000)); err != nil {
		t.Fatal(err)
	}
	q.enqueue(t, q.call("a", "1"), 999)
	q.enqueue(t, q.call("b", "2"), 0)
	wantError(t, q.Enqueue(t.Context(), q.call("a", "3"), q.at(1000)), api.CodeNoRPCProvider)
	wantError(t, q.Enqueue(t.Context(), q.call("b", "4"), q.at(5000)), api.CodeNoRPCProvider)
}

// A registration that ends earlier than the one in place changes nothing:
// two polls of one provider must not cut each other short.
func testRPCRegisterNeverShortens(t *testing.T, q *rpcQueue) {
	ctx := t.Context()
	if err := q.Register(ctx, "p1", []string{"a"}, q.at(10_000)); err != nil {
		t.Fatal(err)
	}
	if err := q.Register(ctx, "p1", []string{"a"}, q.at(1000)); err != nil {
		t.Fatal(err)
	}
	q.enqueue(t, q.call("a", "1"), 5000)
}

// A claim registers its provider, work or not.
func testRPCClaimRegisters(t *testing.T, q *rpcQueue) {
	q.claimNone(t, "p1", 0, "a", "b")
	q.enqueue(t, q.call("a", "1"), 1)
	q.enqueue(t, q.call("b", "2"), 1)
	_, err := q.Claim(t.Context(), api.RPCClaim{Provider: "p2", Names: []string{"c"}, Max: 1, Lease: lease, Until: q.at(2000)}, q.at(0))
	if err != nil {
		t.Fatal(err)
	}
	q.enqueue(t, q.call("c", "3"), 1999)
	wantError(t, q.Enqueue(t.Context(), q.call("c", "4"), q.at(2000)), api.CodeNoRPCProvider)
}

func rpcClaimTests() []rpcTest {
	return []rpcTest{
		{"Fields", testRPCClaimFields},
		{"OrderAndMax", testRPCClaimOrderAndMax},
		{"OnlyItsNames", testRPCClaimOnlyItsNames},
		{"OneProviderAtATime", testRPCOneProviderAtATime},
		{"PastDeadline", testRPCClaimPastDeadline},
	}
}

// A claimed request carries what the requester sent, and a claim id that
// is not the request's id.
func testRPCClaimFields(t *testing.T, q *rpcQueue) {
	q.register(t, "math/add-two", "p1")
	c := q.call("math/add-two", `{"a":[1,2.5,"x"],"b":null}`)
	c.Requester = "bob@example.com"
	q.enqueue(t, c, 0)
	r := q.claimOne(t, "p1", 1, c)
	if r.ID == "" || r.ID == c.ID {
		t.Errorf("claim id %q: want a new id, not empty nor the request's own %q", r.ID, c.ID)
	}
	if r.Name != c.Name || r.Requester != c.Requester || !r.Deadline.Equal(c.Deadline) {
		t.Errorf("claimed {%q %q %v}, want {%q %q %v}", r.Name, r.Requester, r.Deadline, c.Name, c.Requester, c.Deadline)
	}
	anon := q.call("math/add-two", `"x"`)
	anon.Requester = ""
	q.enqueue(t, anon, 2)
	if r := q.claimOne(t, "p1", 3, anon); r.Requester != "" {
		t.Errorf("anonymous requester came back as %q", r.Requester)
	}
}

// Claims hand out the oldest requests first, across names, at most max.
func testRPCClaimOrderAndMax(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	q.register(t, "b", "p1")
	var calls []api.RPCCall
	for i := range 5 {
		name := []string{"a", "b"}[i%2]
		calls = append(calls, q.enqueue(t, q.call(name, fmt.Sprint(i)), i))
	}
	got := q.claim(t, "p1", 2, 10, "b", "a")
	got = append(got, q.claim(t, "p1", 10, 11, "a", "b")...)
	if len(got) != 5 {
		t.Fatalf("claimed %s, want 5 requests", briefRequests(got))
	}
	seen := map[string]bool{}
	for i, r := range got {
		if string(r.Data) != fmt.Sprint(i) || r.Name != calls[i].Name {
			t.Fatalf("claim %d is %s, want the requests in enqueue order", i, briefRequests(got))
		}
		if seen[r.ID] {
			t.Fatalf("claim id %s given twice", r.ID)
		}
		seen[r.ID] = true
	}
	q.claimNone(t, "p1", 12, "a", "b")
}

// A provider gets only requests of the names it asks for.
func testRPCClaimOnlyItsNames(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	q.register(t, "a/b", "p1")
	q.enqueue(t, q.call("a/b", "1"), 0)
	q.claimNone(t, "p1", 1, "a", "a/c", "A/B")
	q.claimOne(t, "p1", 2, api.RPCCall{Name: "a/b", Data: json.RawMessage("1")})
}

// A claimed request is with its provider alone.
func testRPCOneProviderAtATime(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1", "p2")
	c := q.enqueue(t, q.call("a", "1"), 0)
	q.claimOne(t, "p1", 1, c)
	q.claimNone(t, "p2", 2, "a")
	q.claimNone(t, "p1", 3, "a")
}

// A request is never handed out at or after its deadline.
func testRPCClaimPastDeadline(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	c := q.call("a", "1")
	c.Deadline = q.at(1000)
	q.enqueue(t, c, 0)
	q.claimNone(t, "p1", 1000, "a")
	q.claimOne(t, "p1", 999, c)
}
