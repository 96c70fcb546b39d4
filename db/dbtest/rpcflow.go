package dbtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

func rpcAnswerTests() []rpcTest {
	return []rpcTest{
		{"Data", testRPCAnswerData},
		{"Error", testRPCAnswerError},
		{"UnknownIDs", testRPCUnknownIDs},
	}
}

// An answer makes the request done once; Take hands the result out once.
func testRPCAnswerData(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	c := q.enqueue(t, q.call("a", "1"), 0)
	q.notDone(t, c.ID)
	r := q.claimOne(t, "p1", 1, c)
	q.notDone(t, c.ID)
	q.answer(t, r.ID, data(`{"sum":3,"list":[null,true]}`), 2)
	q.answerGone(t, r.ID, 3, "answered already")
	q.take(t, c.ID, result(`{"sum":3,"list":[null,true]}`))
	q.gone(t, c.ID)
	q.answerGone(t, r.ID, 4, "taken already")

	// null is an answer too.
	c = q.enqueue(t, q.call("a", "2"), 5)
	q.answer(t, q.claimOne(t, "p1", 6, c).ID, data("null"), 7)
	q.take(t, c.ID, result("null"))
}

// An error answer reaches the requester as RPC_ERROR with its message.
func testRPCAnswerError(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	c := q.enqueue(t, q.call("a", "1"), 0)
	r := q.claimOne(t, "p1", 1, c)
	q.answer(t, r.ID, api.RPCAnswer{Error: "division by zero: \"x\""}, 2)
	q.take(t, c.ID, api.RPCResult{Code: api.CodeRPCError, Message: "division by zero: \"x\""})
}

// Only the live claim's id answers: not the request's own id, not a made
// up one, not one that differs by a byte.
func testRPCUnknownIDs(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	c := q.enqueue(t, q.call("a", "1"), 0)
	q.answerGone(t, "no-such-claim", 1, "unknown")
	r := q.claimOne(t, "p1", 1, c)
	q.answerGone(t, c.ID, 2, "the request id is not a claim id")
	q.answerGone(t, r.ID+"0", 2, "a longer id")
	q.answerGone(t, r.ID[:len(r.ID)-1], 2, "a shorter id")
	q.answerGone(t, "", 2, "empty")
	q.answer(t, r.ID, data("2"), 3)
	q.take(t, c.ID, result("2"))
}

func rpcRejectTests() []rpcTest {
	return []rpcTest{
		{"Chain", testRPCRejectChain},
		{"NoneLeft", testRPCRejectNoneLeft},
	}
}

// A reject hands the request to a provider that has not had it, and costs
// no attempt; when every registered provider has rejected it, it is done
// with NO_RPC_PROVIDER.
func testRPCRejectChain(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1", "p2", "p3")
	c := q.call("a", "1")
	c.MaxAttempts = 1
	q.enqueue(t, c, 0)
	reject := api.RPCAnswer{Reject: true}
	for i, p := range []string{"p1", "p2", "p3"} {
		r := q.claimOne(t, p, 10*i, c)
		q.answer(t, r.ID, reject, 10*i+1)
		q.answerGone(t, r.ID, 10*i+2, "rejected already")
		if i < 2 {
			q.notDone(t, c.ID)
			q.claimNone(t, p, 10*i+3, "a")
		}
	}
	q.take(t, c.ID, api.RPCResult{Code: api.CodeNoRPCProvider})
}

// Providers whose registration ended do not count as left.
func testRPCRejectNoneLeft(t *testing.T, q *rpcQueue) {
	if err := q.Register(t.Context(), "p2", []string{"a"}, q.at(500)); err != nil {
		t.Fatal(err)
	}
	q.register(t, "a", "p1")
	c := q.enqueue(t, q.call("a", "1"), 0)
	r := q.claimOne(t, "p1", 100, c)
	q.answer(t, r.ID, api.RPCAnswer{Reject: true}, 500)
	q.take(t, c.ID, api.RPCResult{Code: api.CodeNoRPCProvider})
}

func rpcRequesterTests() []rpcTest {
	return []rpcTest{
		{"Cancel", testRPCCancel},
		{"PastDeadline", testRPCExpirePastDeadline},
	}
}

// Cancel frees a request in any state; a done one gives its result.
func testRPCCancel(t *testing.T, q *rpcQueue) {
	ctx := t.Context()
	q.register(t, "a", "p1")
	pending := q.enqueue(t, q.call("a", "1"), 0)
	claimed := q.enqueue(t, q.call("a", "2"), 0)
	done := q.enqueue(t, q.call("a", "3"), 0)
	if _, ok, err := q.Cancel(ctx, pending.ID); ok || err != nil {
		t.Fatalf("Cancel(pending) = %v, %v", ok, err)
	}
	q.gone(t, pending.ID)
	rc := q.claimOne(t, "p1", 1, claimed)
	rd := q.claimOne(t, "p1", 1, done)
	q.claimNone(t, "p2", 1, "a")
	q.answer(t, rd.ID, data(`"three"`), 2)
	if _, ok, err := q.Cancel(ctx, claimed.ID); ok || err != nil {
		t.Fatalf("Cancel(claimed) = %v, %v", ok, err)
	}
	q.answerGone(t, rc.ID, 3, "the requester cancelled")
	q.gone(t, claimed.ID)
	r, ok, err := q.Cancel(ctx, done.ID)
	if err != nil || !ok || string(r.Data) != `"three"` {
		t.Fatalf("Cancel(done) = %s, %v, %v; want its result", briefResult(r), ok, err)
	}
	q.gone(t, done.ID)
	if _, ok, err := q.Cancel(ctx, done.ID); ok || err != nil {
		t.Fatalf("Cancel twice = %v, %v", ok, err)
	}
	if next := q.expire(t, 4); !next.IsZero() {
		t.Fatalf("next = %v after every claim ended, want zero", next)
	}
}

// Expire deletes requests past their deadline, whatever their state.
func testRPCExpirePastDeadline(t *testing.T, q *rpcQueue) {
	q.register(t, "a", "p1")
	var calls []api.RPCCall
	for i := range 3 {
		c := q.call("a", fmt.Sprint(i))
		c.Deadline = q.at(1000 * (i + 1))
		calls = append(calls, q.enqueue(t, c, 0))
	}
	r := q.claimOne(t, "p1", 10, calls[0])
	q.answer(t, r.ID, data("0"), 20)
	q.claimOne(t, "p1", 30, calls[1])
	q.expire(t, 2001)
	q.gone(t, calls[0].ID)
	q.gone(t, calls[1].ID)
	q.notDone(t, calls[2].ID)
	q.expire(t, 3000)
	q.notDone(t, calls[2].ID)
}

func rpcWakeTests() []rpcTest {
	return []rpcTest{{"Announcements", testRPCWakes}}
}

// wakes collects the announcements of TopicRPC.
type wakes chan []byte

func watchRPC(t *testing.T, bus api.Bus) wakes {
	w := make(wakes, 1024)
	stop := bus.Subscribe(api.TopicRPC, func(p []byte) {
		select {
		case w <- p:
		default:
		}
	})
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := bus.Ready(ctx); err != nil {
		t.Fatalf("Bus.Ready: %v", err)
	}
	return w
}

// want waits up to 10s for the announcement want, skipping others (a
// backend may announce more than the suite asks for).
func (w wakes) want(t *testing.T, want api.RPCWake, after string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-w:
			if got, ok := api.ParseRPCWake(p); ok && got == want {
				return
			}
		case <-timeout:
			t.Fatalf("no announcement %+v on %q after %s", want, api.TopicRPC, after)
		}
	}
}

// Every change that someone waits for is announced on TopicRPC, in order.
func testRPCWakes(t *testing.T, q *rpcQueue) {
	w := watchRPC(t, q.bus)
	work := api.RPCWake{Name: "w/a"}
	q.register(t, "w/a", "p1", "p2")
	c := q.enqueue(t, q.call("w/a", "1"), 0)
	w.want(t, work, "Enqueue")
	q.answer(t, q.claimOne(t, "p1", 0, c).ID, data("1"), 1)
	w.want(t, api.RPCWake{ID: c.ID}, "an answer")

	c = q.enqueue(t, q.call("w/a", "2"), 2)
	w.want(t, work, "Enqueue")
	q.answer(t, q.claimOne(t, "p1", 2, c).ID, api.RPCAnswer{Reject: true}, 3)
	w.want(t, work, "a reject with another provider left")
	q.answer(t, q.claimOne(t, "p2", 4, c).ID, api.RPCAnswer{Reject: true}, 5)
	w.want(t, api.RPCWake{ID: c.ID}, "a reject with no provider left")

	c = q.call("w/a", "3")
	c.MaxAttempts = 2
	q.enqueue(t, c, 10)
	w.want(t, work, "Enqueue")
	q.claimOne(t, "p1", 10, c)
	q.expire(t, 1010)
	w.want(t, work, "a lease ran out")
	q.claimOne(t, "p2", 1010, c)
	q.expire(t, 2010)
	w.want(t, api.RPCWake{ID: c.ID}, "the last lease ran out")

	c = q.enqueue(t, q.call("w/a", "4"), 3000)
	w.want(t, work, "Enqueue")
	q.claimOne(t, "p1", 3000, c)
	q.expire(t, 4000)
	w.want(t, work, "a lease ran out")
	q.claimOne(t, "p2", 4000, c)
	q.expire(t, 5000)
	w.want(t, api.RPCWake{ID: c.ID}, "a lease ran out with no provider left")
}

func rpcConcurrencyTests() []rpcTest {
	return []rpcTest{{"ProvidersRace", testRPCProvidersRace}}
}

// Providers racing for work each get distinct requests; every request is
// claimed once and its requester gets its own answer.
func testRPCProvidersRace(t *testing.T, q *rpcQueue) {
	const providers, requests = 4, 200
	for p := range providers {
		q.register(t, "race", fmt.Sprint("p", p))
	}
	calls := make([]api.RPCCall, requests)
	for i := range calls {
		calls[i] = q.call("race", fmt.Sprintf(`{"i":%d}`, i))
	}
	var mu sync.Mutex
	claimed := map[string]int{} // by data
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, c := range calls {
			if err := q.Enqueue(t.Context(), c, q.at(i)); err != nil {
				t.Errorf("Enqueue %d: %v", i, err)
				return
			}
		}
	})
	for p := range providers {
		provider := fmt.Sprint("p", p)
		wg.Go(func() {
			for tries := 0; tries < 100_000; tries++ {
				mu.Lock()
				n := len(claimed)
				mu.Unlock()
				if n >= requests {
					return
				}
				got, err := q.Claim(t.Context(), api.RPCClaim{Provider: provider, Names: []string{"race"}, Max: 3,
					Lease: time.Minute, Until: q.at(600_000)}, q.at(requests))
				if err != nil {
					t.Errorf("%s: Claim: %v", provider, err)
					return
				}
				for _, r := range got {
					mu.Lock()
					claimed[string(r.Data)]++
					mu.Unlock()
					echo := json.RawMessage(fmt.Sprintf(`{"by":%q,"req":%s}`, provider, r.Data))
					if err := q.Answer(t.Context(), r.ID, api.RPCAnswer{Data: echo}, q.at(requests+1)); err != nil {
						t.Errorf("%s: Answer: %v", provider, err)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, c := range calls {
		if n := claimed[string(c.Data)]; n != 1 {
			t.Errorf("request %s was claimed %d times, want once", c.Data, n)
		}
		res, ok, err := q.Take(t.Context(), c.ID)
		var got struct {
			Req json.RawMessage `json:"req"`
		}
		if err != nil || !ok || json.Unmarshal(res.Data, &got) != nil || string(got.Req) != string(c.Data) {
			t.Errorf("Take(%s) = %s, %v, %v; want its own answer", c.ID, briefResult(res), ok, err)
		}
	}
}
