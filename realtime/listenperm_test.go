package realtime

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// secretRules lets only one user listen to prices/secret/*; everything
// else is allowed. The user may change (the rules "reload").
type secretRules struct{ allowed atomic.Value }

func (r *secretRules) Allow(_ context.Context, q Request) error {
	if q.Action == ActListen && strings.HasPrefix(q.Name, "prices/secret/") && q.User.ID != r.allowed.Load().(string) {
		return api.Errorf(api.CodePermissionDenied, "not yours")
	}
	return nil
}

func (*secretRules) DependsOnData(Section, Action, string) bool { return false }

// toldLog keeps every listen frame a Listen pushed.
type toldLog struct {
	mu     sync.Mutex
	frames []string // "listener name active"
	active map[api.ListenKey]map[string]bool
}

func (t *toldLog) add(listener string, k api.ListenKey, active bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active == nil {
		t.active = map[api.ListenKey]map[string]bool{}
	}
	if t.active[k] == nil {
		t.active[k] = map[string]bool{}
	}
	if active {
		t.active[k][listener] = true
		t.frames = append(t.frames, listener+" "+k.Name+" active")
	} else {
		delete(t.active[k], listener)
		t.frames = append(t.frames, listener+" "+k.Name+" inactive")
	}
}

// activeOf returns the listeners told active of k now.
func (t *toldLog) activeOf(k api.ListenKey) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for l := range t.active[k] {
		out = append(out, l)
	}
	return out
}

func (t *toldLog) ever(listener, name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.frames {
		if f == listener+" "+name+" active" {
			return true
		}
	}
	return false
}

// waitActive polls until the listeners told active of k are want.
func (t *toldLog) waitActive(tb testing.TB, k api.ListenKey, want ...string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := t.activeOf(k)
		if len(got) == len(want) && (len(want) == 0 || got[0] == want[0]) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: told active %q, want %q", k.Name, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A listener whose user may not listen to a name is never told of it:
// the other listener is, also for the names that rendezvous hashing gives
// to the refused one first. Names both may listen to go to one of them.
// When the rules change, the names move to whom they allow.
func TestListenChoiceFollowsRules(t *testing.T) {
	store, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rules := &secretRules{}
	rules.allowed.Store("bob")
	hub := NewHub(store, store.Bus(), rules, HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	}, log)
	close(hub.started)
	l := NewListen(store, store.Bus(), hub, ListenConfig{Instance: "i1", LeaveGrace: time.Millisecond, Renew: 50 * time.Millisecond}, log)
	told := &toldLog{}
	l.told = told.add
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	f := &listenFixture{hub: hub, listen: l}

	open := func(user string) *Stream {
		s, err := hub.Open(context.Background(), api.User{ID: user}, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		s.sink = discard{}
		hub.register(s)
		return s
	}
	alice, bob, client := open("alice"), open("bob"), open("carol")
	wa := watchOf(t, alice, api.Subscription{Listen: "prices/*"})
	wb := watchOf(t, bob, api.Subscription{Listen: "prices/*"})
	l.Watch(wa)
	l.Watch(wb)
	f.settle(t)
	la, lb := f.listenerOf(wa), f.listenerOf(wb)
	listeners := []api.Listener{
		{ID: la, Instance: "i1", Stream: alice.ID, Prefix: "prices/"},
		{ID: lb, Instance: "i1", Stream: bob.ID, Prefix: "prices/"},
	}
	demand := []api.Demand{{Instance: "i1", Count: 1, Stream: client.ID}}

	const names = 8
	aliceFirst := 0
	for n := range names {
		k := secretKey(n)
		if first, _ := api.Choose(k, "", demand, listeners); first.ID == la {
			aliceFirst++
		}
		f.subscribe(t, client, api.Subscription{Record: k.Name}, 1)
	}
	if aliceFirst == 0 {
		t.Fatal("the test needs names that the Store gives to alice first")
	}
	for n := range names {
		told.waitActive(t, secretKey(n), lb)
	}
	for n := range names {
		if told.ever(la, secretKey(n).Name) {
			t.Errorf("alice was told of %s", secretKey(n).Name)
		}
	}
	eur := api.ListenKey{Kind: api.ListenRecord, Name: "prices/eur"}
	f.subscribe(t, client, api.Subscription{Record: eur.Name}, 1)
	deadline := time.Now().Add(10 * time.Second)
	for len(told.activeOf(eur)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("prices/eur told to %q, want one listener", told.activeOf(eur))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The rules change: alice may, bob may not. Every secret name moves.
	rules.allowed.Store("alice")
	hub.RulesChanged()
	for n := range names {
		told.waitActive(t, secretKey(n), la)
	}
	if got := told.activeOf(eur); len(got) != 1 {
		t.Errorf("prices/eur told to %q, want one listener", got)
	}

	// Alice's listener goes: bob declined the secret names, so nobody
	// has them, while prices/eur is bob's.
	l.Unwatch(wa)
	deadline = time.Now().Add(10 * time.Second)
	for {
		cs, err := store.Chosen(t.Context(), "i1")
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 1 && cs[0].Name == eur.Name && cs[0].Listener == lb {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chosen %+v, want only prices/eur for bob", cs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.settle(t)
	for n := range names {
		if got := told.activeOf(secretKey(n)); len(got) != 1 || got[0] != la {
			t.Errorf("%s: told active %q, want only alice's gone listener", secretKey(n).Name, got)
		}
	}
}

func secretKey(n int) api.ListenKey {
	return api.ListenKey{Kind: api.ListenRecord, Name: "prices/secret/" + string(rune('a'+n))}
}
