package postgres_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/dbtest"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// TestRPCConformance runs the api.RPCQueue conformance suite on a database
// of its own for every subtest, with the store's Bus once its listener is
// connected: Bus.Ready reports at once rather than waiting, and a store
// just opened may still be connecting (an instance is not ready before).
func TestRPCConformance(t *testing.T) {
	dbtest.RunRPC(t, func(t *testing.T) (api.RPCQueue, api.Bus) {
		s := open(t, pgtest.NewDatabase(t))
		waitBusReady(t, s.Bus())
		return s.RPC(), s.Bus()
	})
}

// waitBusReady waits up to 10s for the Bus's listener to connect.
func waitBusReady(t testing.TB, b api.Bus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.Ready(t.Context())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Bus not ready after 10s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRPCClaimRaceAcrossInstances: providers on two Stores (two instances)
// of one database claim at the same time as requests arrive from both;
// every request is claimed exactly once and its requester gets its own
// answer, whichever instance claimed it.
func TestRPCClaimRaceAcrossInstances(t *testing.T) {
	url := pgtest.NewDatabase(t)
	queues := []api.RPCQueue{open(t, url).RPC(), open(t, url).RPC()}
	const providersPerInstance, requests = 4, 400
	t0 := time.Now()
	until := t0.Add(10 * time.Minute)
	for i, q := range queues {
		for p := range providersPerInstance {
			if err := q.Register(t.Context(), fmt.Sprintf("i%d-p%d", i, p), []string{"race"}, until); err != nil {
				t.Fatal(err)
			}
		}
	}

	var mu sync.Mutex
	claimed := make(map[string][]string) // request data -> providers that claimed it
	var enqueued, answered sync.WaitGroup
	ids := make([]string, requests)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%d", i)
	}
	// Each instance enqueues half of the requests.
	for i, q := range queues {
		enqueued.Go(func() {
			for n := i; n < requests; n += len(queues) {
				c := api.RPCCall{ID: ids[n], Name: "race", Data: json.RawMessage(fmt.Sprint(n)),
					Deadline: t0.Add(time.Minute), MaxAttempts: 1}
				if err := q.Enqueue(t.Context(), c, t0); err != nil {
					t.Errorf("Enqueue %d: %v", n, err)
				}
			}
		})
	}
	done := make(chan struct{})
	for i, q := range queues {
		for p := range providersPerInstance {
			provider := fmt.Sprintf("i%d-p%d", i, p)
			answered.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					got, err := q.Claim(t.Context(), api.RPCClaim{Provider: provider, Names: []string{"race"},
						Max: 1 + p, Lease: time.Minute, Until: until}, t0)
					if err != nil {
						t.Errorf("%s: Claim: %v", provider, err)
						return
					}
					for _, r := range got {
						mu.Lock()
						claimed[string(r.Data)] = append(claimed[string(r.Data)], provider)
						mu.Unlock()
						echo := json.RawMessage(fmt.Sprintf(`{"by":%q,"req":%s}`, provider, r.Data))
						if err := q.Answer(t.Context(), r.ID, api.RPCAnswer{Data: echo}, t0); err != nil {
							t.Errorf("%s: Answer: %v", provider, err)
						}
					}
				}
			})
		}
	}
	enqueued.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(claimed)
		mu.Unlock()
		if n >= requests || time.Now().After(deadline) || t.Failed() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	answered.Wait()

	byInstance := map[string]int{}
	for n, id := range ids {
		who := claimed[fmt.Sprint(n)]
		if len(who) != 1 {
			t.Errorf("request %d was claimed by %v, want exactly one provider", n, who)
			continue
		}
		byInstance[who[0][:2]]++
		// Either instance can take the result.
		res, ok, err := queues[(n+1)%2].Take(t.Context(), id)
		var got struct {
			By  string          `json:"by"`
			Req json.RawMessage `json:"req"`
		}
		if err != nil || !ok || json.Unmarshal(res.Data, &got) != nil || string(got.Req) != fmt.Sprint(n) || got.By != who[0] {
			t.Errorf("Take(%s) = %s, %v, %v; want the answer of %s to request %d", id, res.Data, ok, err, who[0], n)
		}
	}
	t.Logf("claims by instance: %v", byInstance)
	if len(byInstance) != 2 {
		t.Errorf("claims by instance: %v; want both instances' providers to have claimed", byInstance)
	}
}

// TestRPCClaimPassedOver: a claim over several names locks the oldest
// requests of each name and keeps the oldest of all; a request it locked
// and did not keep may have been skipped by another claimer, which went
// back to waiting, so its name is announced again.
func TestRPCClaimPassedOver(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	waitBusReady(t, s.Bus())
	q := s.RPC()
	wakes := make(chan string, 100)
	stop := s.Bus().Subscribe(api.TopicRPC, func(p []byte) {
		if w, ok := api.ParseRPCWake(p); ok && w.Name != "" {
			wakes <- w.Name
		}
	})
	defer stop()
	t0 := time.Now()
	until := t0.Add(time.Minute)
	if err := q.Register(t.Context(), "p1", []string{"a", "b"}, until); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		c := api.RPCCall{ID: name, Name: name, Data: json.RawMessage(`1`), Deadline: until, MaxAttempts: 1}
		if err := q.Enqueue(t.Context(), c, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "b"} { // the enqueues' announcements
		if got := nextWake(t, wakes); got != want {
			t.Fatalf("announced %q after Enqueue, want %q", got, want)
		}
	}
	got, err := q.Claim(t.Context(), api.RPCClaim{Provider: "p1", Names: []string{"b", "a"}, Max: 1,
		Lease: time.Minute, Until: until}, t0)
	if err != nil || len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("Claim = %+v, %v; want the oldest request, of a", got, err)
	}
	if name := nextWake(t, wakes); name != "b" {
		t.Fatalf("announced %q after the claim, want b: its request was passed over", name)
	}
}

func nextWake(t *testing.T, wakes chan string) string {
	t.Helper()
	select {
	case name := <-wakes:
		return name
	case <-time.After(10 * time.Second):
		t.Fatal("no announcement in 10s")
		return ""
	}
}
