package dbtest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// The listening tests: demand and listeners of several instances, and the
// one choice per name (api.Listening). Times come from t0, like the RPC
// suite's: nothing waits on the wall clock.

func listenTests() []test {
	return []test{
		{"NoDemandNoChoice", testListenNoDemand},
		{"DemandThenListener", testListenDemandFirst},
		{"ListenerThenDemand", testListenListenerFirst},
		{"LongestPrefix", testListenLongestPrefix},
		{"OwnSubscription", testListenOwnSubscription},
		{"OwnSubscriptionResuming", testListenOwnResuming},
		{"Kinds", testListenKinds},
		{"HandOver", testListenHandOver},
		{"RemoveListenersExcept", testListenRemoveExcept},
		{"DemandOfTwoInstances", testListenTwoInstances},
		{"Expiry", testListenExpiry},
		{"Prefixes", testListenPrefixes},
		{"ConcurrentChoices", testListenConcurrentChoices},
		{"ConcurrentRemovals", testListenConcurrentRemovals},
		{"FirstDemandAndNewListener", testListenFirstDemandRacesListener},
		{"DeclineSkipsListener", testListenDecline},
		{"DeclinesGoWithListener", testListenDeclinesGo},
		{"ForgetDeclines", testListenForgetDeclines},
		{"ConcurrentDeclines", testListenConcurrentDeclines},
	}
}

// listenT is a store under test with its clock: every time is t0 plus an
// offset in seconds; rows live until t0+1h unless a test says otherwise.
type listenT struct {
	api.Listening
	t  *testing.T
	t0 time.Time
}

func newListenT(t *testing.T, s api.Store) *listenT {
	return &listenT{Listening: s, t: t, t0: time.Now().UTC().Truncate(time.Millisecond)}
}

func (l *listenT) at(sec int) time.Time { return l.t0.Add(time.Duration(sec) * time.Second) }

func recKey(name string) api.ListenKey { return api.ListenKey{Kind: api.ListenRecord, Name: name} }
func evtKey(name string) api.ListenKey { return api.ListenKey{Kind: api.ListenEvent, Name: name} }

// demand sets instance's demand for key (stream "" for a count of 2 or 0).
func (l *listenT) demand(key api.ListenKey, instance string, count int, stream string) []string {
	l.t.Helper()
	w, err := l.SetDemand(l.t.Context(), api.Demand{ListenKey: key, Instance: instance, Count: count, Stream: stream}, l.at(3600), l.at(0))
	if err != nil {
		l.t.Fatalf("SetDemand(%v, %s, %d): %v", key, instance, count, err)
	}
	return w
}

// listener adds the listener id of instance on prefix, its stream "s-"+id.
func (l *listenT) listener(id, instance, prefix string) []string {
	l.t.Helper()
	w, err := l.AddListener(l.t.Context(), api.Listener{ID: id, Instance: instance, Stream: "s-" + id, Prefix: prefix}, l.at(3600), l.at(0))
	if err != nil {
		l.t.Fatalf("AddListener(%s): %v", id, err)
	}
	return w
}

func (l *listenT) remove(id string) []string {
	l.t.Helper()
	w, err := l.RemoveListener(l.t.Context(), id, l.at(0))
	if err != nil {
		l.t.Fatalf("RemoveListener(%s): %v", id, err)
	}
	return w
}

// chosen returns "kind name=listener" for every choice of the instances,
// sorted.
func (l *listenT) chosen(instances ...string) []string {
	l.t.Helper()
	out := []string{}
	for _, i := range instances {
		cs, err := l.Chosen(l.t.Context(), i)
		if err != nil {
			l.t.Fatalf("Chosen(%s): %v", i, err)
		}
		for _, c := range cs {
			if c.Instance != i {
				l.t.Errorf("Chosen(%s) returned %+v, a choice of another instance", i, c)
			}
			out = append(out, c.Kind+" "+c.Name+"="+c.Listener)
		}
	}
	sort.Strings(out)
	return out
}

func (l *listenT) wantChosen(want []string, instances ...string) {
	l.t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := l.chosen(instances...); !slices.Equal(got, want) {
		l.t.Errorf("chosen = %q, want %q", got, want)
	}
}

func wantWake(t *testing.T, got []string, want ...string) {
	t.Helper()
	got = slices.Clone(got)
	sort.Strings(got)
	sort.Strings(want)
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("wake = %q, want %q", got, want)
	}
}

// A listener without demand is told nothing; demand without a listener
// under its prefix chooses nothing.
func testListenNoDemand(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	wantWake(t, l.listener("l1", "a", "prices/"))
	wantWake(t, l.demand(recKey("rates/eur"), "b", 1, "x"))
	wantWake(t, l.demand(recKey("prices"), "b", 1, "x")) // the prefix's own name is not under it
	l.wantChosen(nil, "a", "b")
}

func testListenDemandFirst(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	wantWake(t, l.demand(recKey("prices/eur"), "a", 1, "x"))
	wantWake(t, l.listener("l1", "b", "prices/"), "b")
	l.wantChosen([]string{"record prices/eur=l1"}, "a", "b")
	l.wantChosen(nil, "a")
	// The last subscriber leaves: the listener loses the name.
	wantWake(t, l.demand(recKey("prices/eur"), "a", 0, ""), "b")
	l.wantChosen(nil, "a", "b")
}

func testListenListenerFirst(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	wantWake(t, l.listener("l1", "b", "prices/"))
	wantWake(t, l.demand(recKey("prices/eur"), "a", 1, "x"), "b")
	wantWake(t, l.demand(recKey("prices/usd"), "a", 2, ""), "b")
	// More subscribers change nothing.
	wantWake(t, l.demand(recKey("prices/eur"), "a", 2, ""))
	wantWake(t, l.demand(recKey("prices/eur"), "c", 1, "y"))
	l.wantChosen([]string{"record prices/eur=l1", "record prices/usd=l1"}, "b")
}

// A name goes to a listener of the longest prefix that covers it, even
// when that listener comes after another was chosen.
func testListenLongestPrefix(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("short", "a", "prices/")
	l.demand(recKey("prices/eur/day"), "c", 1, "x")
	l.demand(recKey("prices/usd"), "c", 1, "x")
	l.wantChosen([]string{"record prices/eur/day=short", "record prices/usd=short"}, "a", "b")
	wantWake(t, l.listener("long", "b", "prices/eur/"), "a", "b")
	l.wantChosen([]string{"record prices/usd=short"}, "a")
	l.wantChosen([]string{"record prices/eur/day=long"}, "b")
	// New demand goes to the longest prefix at once.
	wantWake(t, l.demand(recKey("prices/eur/week"), "c", 1, "x"), "b")
	// The long one gone, the short one has them again.
	wantWake(t, l.remove("long"), "a", "b")
	l.wantChosen([]string{"record prices/eur/day=short", "record prices/eur/week=short", "record prices/usd=short"}, "a", "b")
}

// A stream's own subscription is not demand for its own listeners; a
// second subscriber makes it so.
func testListenOwnSubscription(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "prices/")
	wantWake(t, l.demand(recKey("prices/eur"), "a", 1, "s-l1"))
	l.wantChosen(nil, "a")
	wantWake(t, l.demand(recKey("prices/eur"), "b", 1, "x"), "a")
	l.wantChosen([]string{"record prices/eur=l1"}, "a")
	wantWake(t, l.demand(recKey("prices/eur"), "b", 0, ""), "a")
	l.wantChosen(nil, "a")
	// Two of the instance's streams, one of them the listener's.
	wantWake(t, l.demand(recKey("prices/eur"), "a", 2, ""), "a")
	l.wantChosen([]string{"record prices/eur=l1"}, "a")
	// Another listener takes what is only the first one's own demand.
	l.listener("l2", "b", "prices/")
	wantWake(t, l.demand(recKey("prices/eur"), "a", 1, "s-l1"), "a", "b")
	l.wantChosen([]string{"record prices/eur=l2"}, "a", "b")
}

// A stream that resumes on another instance is counted by both for a
// while (the old one's demand lasts its grace): its subscription is still
// its own, not demand for its listeners; another stream's is.
func testListenOwnResuming(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "prices/")
	l.demand(recKey("prices/eur"), "a", 1, "s-l1")
	wantWake(t, l.demand(recKey("prices/eur"), "b", 1, "s-l1"))
	l.wantChosen(nil, "a")
	wantWake(t, l.demand(recKey("prices/eur"), "c", 1, "x"), "a")
	l.wantChosen([]string{"record prices/eur=l1"}, "a")
	wantWake(t, l.demand(recKey("prices/eur"), "c", 0, ""), "a")
	wantWake(t, l.demand(recKey("prices/eur"), "a", 0, ""))
	l.wantChosen(nil, "a")
}

// A record and an event of the same name are two names.
func testListenKinds(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "chat/")
	l.demand(evtKey("chat/lobby"), "b", 1, "x")
	l.wantChosen([]string{"event chat/lobby=l1"}, "a")
	l.demand(recKey("chat/lobby"), "b", 1, "x")
	l.demand(evtKey("chat/lobby"), "b", 0, "")
	l.wantChosen([]string{"record chat/lobby=l1"}, "a")
}

// When the chosen listener goes, another of a matching prefix is chosen,
// on any instance; when none is left, the name has no listener.
func testListenHandOver(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "prices/")
	l.listener("l2", "b", "prices/")
	l.listener("l3", "b", "rates/")
	l.demand(recKey("prices/eur"), "c", 1, "x")
	got := l.chosen("a", "b")
	if len(got) != 1 {
		t.Fatalf("chosen = %q, want one choice", got)
	}
	first, other, otherInstance := "l1", "l2", "b"
	if got[0] == "record prices/eur=l2" {
		first, other, otherInstance = "l2", "l1", "a"
	}
	w := l.remove(first)
	if !slices.Contains(w, otherInstance) {
		t.Errorf("wake = %q, want %s among them", w, otherInstance)
	}
	l.wantChosen([]string{"record prices/eur=" + other}, "a", "b")
	l.remove(other)
	l.wantChosen(nil, "a", "b")
	wantWake(t, l.remove("l9")) // an unknown listener
}

// RemoveListenersExcept removes the instance's other listeners only, and
// their names go to the listeners left.
func testListenRemoveExcept(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "p/")
	l.demand(recKey("p/x"), "c", 1, "x")
	l.wantChosen([]string{"record p/x=l1"}, "a")
	l.listener("l2", "a", "p/")
	l.listener("l3", "a", "q/")
	l.listener("l4", "b", "p/")
	w, err := l.RemoveListenersExcept(t.Context(), "a", []string{"l3"}, l.at(0))
	if err != nil {
		t.Fatal(err)
	}
	wantWake(t, w, "a", "b")
	l.wantChosen([]string{"record p/x=l4"}, "a", "b")
	l.demand(recKey("q/y"), "c", 1, "x")
	l.wantChosen([]string{"record p/x=l4", "record q/y=l3"}, "a", "b")
	if w, err = l.RemoveListenersExcept(t.Context(), "a", nil, l.at(0)); err != nil {
		t.Fatal(err)
	}
	wantWake(t, w, "a")
	l.wantChosen([]string{"record p/x=l4"}, "a", "b")
	if w, err = l.RemoveListenersExcept(t.Context(), "a", nil, l.at(0)); err != nil {
		t.Fatal(err)
	}
	wantWake(t, w)
}

// Demand is per instance: one instance's rows do not replace another's.
func testListenTwoInstances(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "p/")
	l.demand(evtKey("p/x"), "b", 1, "x")
	l.demand(evtKey("p/x"), "c", 1, "y")
	wantWake(t, l.demand(evtKey("p/x"), "b", 0, ""))
	l.wantChosen([]string{"event p/x=l1"}, "a")
	wantWake(t, l.demand(evtKey("p/x"), "c", 0, ""), "a")
	l.wantChosen(nil, "a")
}

// Rows of an instance that stopped renewing them stop counting once they
// expire, and ExpireListen re-makes the choices they made; renewed rows
// live on.
func testListenExpiry(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	ctx := t.Context()
	add := func(id, instance string, expires int) {
		t.Helper()
		if _, err := l.AddListener(ctx, api.Listener{ID: id, Instance: instance, Stream: "s-" + id, Prefix: "p/"}, l.at(expires), l.at(0)); err != nil {
			t.Fatal(err)
		}
	}
	setDemand := func(instance string, expires int) {
		t.Helper()
		if _, err := l.SetDemand(ctx, api.Demand{ListenKey: recKey("p/x"), Instance: instance, Count: 1, Stream: "x"}, l.at(expires), l.at(0)); err != nil {
			t.Fatal(err)
		}
	}
	expire := func(now int, want ...string) {
		t.Helper()
		w, err := l.ExpireListen(ctx, l.at(now))
		if err != nil {
			t.Fatalf("ExpireListen: %v", err)
		}
		wantWake(t, w, want...)
	}
	add("l1", "a", 10)
	setDemand("c", 10)
	l.wantChosen([]string{"record p/x=l1"}, "a")
	add("l2", "b", 10)
	setDemand("d", 30)
	expire(9)
	l.wantChosen([]string{"record p/x=l1"}, "a")
	if err := l.RenewListen(ctx, "b", l.at(20)); err != nil {
		t.Fatal(err)
	}
	// a's listener and c's demand expire; d's demand holds the name, and
	// b's renewed listener takes it.
	expire(10, "a", "b")
	l.wantChosen([]string{"record p/x=l2"}, "a", "b")
	expire(15)
	// A decision made at a later time does not see expired rows either.
	if w, err := l.SetDemand(ctx, api.Demand{ListenKey: recKey("p/y"), Instance: "d", Count: 1, Stream: "x"}, l.at(3600), l.at(25)); err != nil {
		t.Fatal(err)
	} else {
		wantWake(t, w)
	}
	expire(20, "b")
	l.wantChosen(nil, "a", "b")
	// A listener added later is told of the demand live then only.
	w, err := l.AddListener(ctx, api.Listener{ID: "l3", Instance: "a", Stream: "s-l3", Prefix: "p/"}, l.at(3600), l.at(31))
	if err != nil {
		t.Fatal(err)
	}
	wantWake(t, w, "a")
	l.wantChosen([]string{"record p/y=l3"}, "a", "b")
}

func testListenPrefixes(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	ctx := t.Context()
	l.listener("l1", "a", "prices/")
	l.listener("l2", "b", "prices/")
	l.listener("l3", "b", "rates/")
	if _, err := l.AddListener(ctx, api.Listener{ID: "l4", Instance: "c", Stream: "s", Prefix: "old/"}, l.at(5), l.at(0)); err != nil {
		t.Fatal(err)
	}
	got, err := l.ListenPrefixes(ctx, l.at(5))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if want := []string{"prices/", "rates/"}; !slices.Equal(got, want) {
		t.Errorf("ListenPrefixes = %q, want %q", got, want)
	}
}

// Many instances add listeners and demand for the same names at once:
// every name ends with exactly one choice, of a listener that exists,
// of the longest prefix.
func testListenConcurrentChoices(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	ctx := t.Context()
	const instances, names = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*instances*names)
	for i := range instances {
		inst := fmt.Sprintf("i%d", i)
		wg.Go(func() {
			prefix := "p/"
			if i%2 == 1 {
				prefix = "p/q/"
			}
			if _, err := l.AddListener(ctx, api.Listener{ID: "l-" + inst, Instance: inst, Stream: "s-" + inst, Prefix: prefix}, l.at(3600), l.at(0)); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			for n := range names {
				d := api.Demand{ListenKey: recKey(fmt.Sprintf("p/q/%d", n)), Instance: inst, Count: 1, Stream: "x" + inst}
				if n%2 == 0 {
					d.Name = fmt.Sprintf("p/%d", n)
				}
				if _, err := l.SetDemand(ctx, d, l.at(3600), l.at(0)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := make([]string, instances)
	for i := range all {
		all[i] = fmt.Sprintf("i%d", i)
	}
	got := l.chosen(all...)
	if len(got) != names {
		t.Fatalf("%d choices for %d names: %q", len(got), names, got)
	}
	for _, c := range got {
		name, id, _ := strings.Cut(strings.TrimPrefix(c, "record "), "=")
		var inst int
		if _, err := fmt.Sscanf(id, "l-i%d", &inst); err != nil {
			t.Fatalf("choice %q of an unknown listener", c)
		}
		if strings.HasPrefix(name, "p/q/") != (inst%2 == 1) {
			t.Errorf("choice %q: not a listener of the longest prefix", c)
		}
	}
}

// Listeners go while demand comes and goes: no choice is left with a
// listener that is gone, and every name in demand has one.
func testListenConcurrentRemovals(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	ctx := t.Context()
	const listeners, names = 10, 30
	for i := range listeners {
		l.listener(fmt.Sprintf("l%d", i), fmt.Sprintf("i%d", i%2), "p/")
	}
	var wg sync.WaitGroup
	errs := make(chan error, listeners+names*3)
	for i := range listeners - 1 { // l9 stays
		wg.Go(func() {
			if _, err := l.RemoveListener(ctx, fmt.Sprintf("l%d", i), l.at(0)); err != nil {
				errs <- err
			}
		})
	}
	for n := range names {
		wg.Go(func() {
			key := evtKey(fmt.Sprintf("p/%d", n))
			for _, count := range []int{1, 0, 2} {
				if _, err := l.SetDemand(ctx, api.Demand{ListenKey: key, Instance: "c", Count: count}, l.at(3600), l.at(0)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make([]string, names)
	for n := range names {
		want[n] = fmt.Sprintf("event p/%d=l9", n)
	}
	sort.Strings(want)
	l.wantChosen(want, "i0", "i1")
}

// A new name's first demand and a new listener of its prefix, at the same
// time, many times: once both calls returned, the name has its choice
// (one of them saw the other), not only after ExpireListen repairs it.
func testListenFirstDemandRacesListener(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	ctx := t.Context()
	const pairs, parallel = 500, 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	sem := make(chan struct{}, parallel)
	for i := range pairs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			prefix := fmt.Sprintf("r%d/", i)
			start := make(chan struct{})
			var pair sync.WaitGroup
			pair.Go(func() {
				<-start
				d := api.Demand{ListenKey: evtKey(prefix + "x"), Instance: "d", Count: 1, Stream: "x"}
				if _, err := l.SetDemand(ctx, d, l.at(3600), l.at(0)); err != nil {
					errs <- err
				}
			})
			pair.Go(func() {
				<-start
				li := api.Listener{ID: fmt.Sprintf("l%d", i), Instance: fmt.Sprintf("i%d", i), Stream: "s", Prefix: prefix}
				if _, err := l.AddListener(ctx, li, l.at(3600), l.at(0)); err != nil {
					errs <- err
				}
			})
			close(start)
			pair.Wait()
			cs, err := l.Chosen(ctx, fmt.Sprintf("i%d", i))
			if err != nil {
				errs <- err
				return
			}
			if len(cs) != 1 || cs[0].Name != prefix+"x" || cs[0].Listener != fmt.Sprintf("l%d", i) {
				errs <- fmt.Errorf("%sx: chosen %+v right after its first demand and a new listener, want l%d", prefix, cs, i)
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d pairs failed", n, pairs)
	}
}

func (l *listenT) decline(key api.ListenKey, id string) []string {
	l.t.Helper()
	w, err := l.DeclineListen(l.t.Context(), key, id, l.at(0))
	if err != nil {
		l.t.Fatalf("DeclineListen(%v, %s): %v", key, id, err)
	}
	return w
}

// A listener that declines a name is not chosen for it: another is, on
// any instance, and none when every one declined. A decline is of one
// name of one kind; it holds for demand that comes later and through
// ExpireListen's repairs.
func testListenDecline(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "p/")
	l.listener("l2", "b", "p/")
	l.demand(recKey("p/x"), "c", 1, "x")
	got := l.chosen("a", "b")
	if len(got) != 1 {
		t.Fatalf("chosen = %q, want one choice", got)
	}
	first, firstInstance, other, otherInstance := "l1", "a", "l2", "b"
	if got[0] == "record p/x=l2" {
		first, firstInstance, other, otherInstance = "l2", "b", "l1", "a"
	}
	wantWake(t, l.decline(recKey("p/x"), first), firstInstance, otherInstance)
	l.wantChosen([]string{"record p/x=" + other}, "a", "b")
	wantWake(t, l.decline(recKey("p/x"), first)) // again: nothing changes
	// Demand changes and repairs do not bring the declined one back.
	l.demand(recKey("p/x"), "d", 2, "")
	if _, err := l.ExpireListen(t.Context(), l.at(1)); err != nil {
		t.Fatal(err)
	}
	l.wantChosen([]string{"record p/x=" + other}, "a", "b")
	// The other one declines too: no listener.
	wantWake(t, l.decline(recKey("p/x"), other), otherInstance)
	l.wantChosen(nil, "a", "b")
	if _, err := l.ExpireListen(t.Context(), l.at(1)); err != nil {
		t.Fatal(err)
	}
	l.wantChosen(nil, "a", "b")
	// The event of the same name, and another record, are other names.
	l.demand(evtKey("p/x"), "c", 1, "x")
	l.demand(recKey("p/y"), "c", 1, "x")
	if got := l.chosen("a", "b"); len(got) != 2 || strings.HasPrefix(got[0], "record") {
		t.Errorf("chosen = %q, want the event p/x and the record p/y", got)
	}
	// A decline before the demand holds when it comes.
	l.decline(recKey("p/z"), "l1")
	l.decline(recKey("p/z"), "l2")
	wantWake(t, l.demand(recKey("p/z"), "c", 1, "x"))
	// Unknown listeners decline nothing.
	wantWake(t, l.decline(recKey("p/x"), "l9"))
	l.listener("l9", "a", "p/")
	l.wantChosen([]string{"record p/x=l9", "record p/z=l9"}, "a")
}

// Declines go with their listener, however it goes: a listener stored
// again under the same id after its removal, RemoveListenersExcept or
// expiry has none.
func testListenDeclinesGo(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.demand(recKey("p/x"), "c", 1, "x")
	for _, how := range []string{"remove", "except", "expire"} {
		l.listener("l1", "a", "p/")
		l.decline(recKey("p/x"), "l1")
		l.wantChosen(nil, "a")
		switch how {
		case "remove":
			l.remove("l1")
		case "except":
			if _, err := l.RemoveListenersExcept(t.Context(), "a", nil, l.at(0)); err != nil {
				t.Fatal(err)
			}
		case "expire":
			if err := l.RenewListen(t.Context(), "a", l.at(10)); err != nil {
				t.Fatal(err)
			}
			if err := l.RenewListen(t.Context(), "c", l.at(7200)); err != nil {
				t.Fatal(err)
			}
			if _, err := l.ExpireListen(t.Context(), l.at(20)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.AddListener(t.Context(), api.Listener{ID: "l1", Instance: "a", Stream: "s-l1", Prefix: "p/"}, l.at(3600), l.at(0)); err != nil {
			t.Fatal(err)
		}
		if got := l.chosen("a"); !slices.Equal(got, []string{"record p/x=l1"}) {
			t.Errorf("after %s: chosen = %q, want l1 again", how, got)
		}
		l.remove("l1")
	}
	// A listener stored again while it lives keeps its declines.
	l.listener("l2", "a", "p/")
	l.decline(recKey("p/x"), "l2")
	l.listener("l2", "a", "p/")
	l.wantChosen(nil, "a")
}

// ForgetDeclines drops the declines of one instance's listeners only, and
// re-makes the choices of their names.
func testListenForgetDeclines(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	l.listener("l1", "a", "p/")
	l.listener("l2", "b", "p/")
	l.demand(recKey("p/x"), "c", 1, "x")
	l.demand(evtKey("p/y"), "c", 1, "x")
	for _, k := range []api.ListenKey{recKey("p/x"), evtKey("p/y")} {
		l.decline(k, "l1")
		l.decline(k, "l2")
	}
	l.wantChosen(nil, "a", "b")
	w, err := l.ForgetDeclines(t.Context(), "b", l.at(0))
	if err != nil {
		t.Fatal(err)
	}
	wantWake(t, w, "b")
	l.wantChosen([]string{"event p/y=l2", "record p/x=l2"}, "a", "b")
	// l1 declines still: l2 goes, and nobody has the names.
	l.remove("l2")
	l.wantChosen(nil, "a", "b")
	if w, err = l.ForgetDeclines(t.Context(), "a", l.at(0)); err != nil {
		t.Fatal(err)
	}
	wantWake(t, w, "a")
	l.wantChosen([]string{"event p/y=l1", "record p/x=l1"}, "a")
	if w, err = l.ForgetDeclines(t.Context(), "a", l.at(0)); err != nil {
		t.Fatal(err)
	}
	wantWake(t, w)
}

// Listeners decline names while demand comes, listeners are added and
// declining ones go, on many instances at once: in the end each name is
// with the one listener that did not decline it.
func testListenConcurrentDeclines(t *testing.T, s api.Store) {
	l := newListenT(t, s)
	ctx := t.Context()
	const listeners, names = 6, 12
	for i := range listeners {
		l.listener(fmt.Sprintf("l%d", i), fmt.Sprintf("i%d", i%3), "p/")
	}
	// Name n is for listener n%listeners alone: every other declines it.
	keep := func(n int) string { return fmt.Sprintf("l%d", n%listeners) }
	var wg sync.WaitGroup
	errs := make(chan error, names*listeners*2+listeners)
	for n := range names {
		key := recKey(fmt.Sprintf("p/%d", n))
		wg.Go(func() {
			if _, err := l.SetDemand(ctx, api.Demand{ListenKey: key, Instance: fmt.Sprintf("c%d", n%2), Count: 1, Stream: "x"}, l.at(3600), l.at(0)); err != nil {
				errs <- err
			}
		})
		for i := range listeners {
			if id := fmt.Sprintf("l%d", i); id != keep(n) {
				wg.Go(func() {
					if _, err := l.DeclineListen(ctx, key, id, l.at(0)); err != nil {
						errs <- err
					}
				})
			}
		}
	}
	// Listeners that decline everything come and go meanwhile.
	for i := range listeners {
		id := fmt.Sprintf("x%d", i)
		wg.Go(func() {
			if _, err := l.AddListener(ctx, api.Listener{ID: id, Instance: "i9", Stream: "s-" + id, Prefix: "p/"}, l.at(3600), l.at(0)); err != nil {
				errs <- err
				return
			}
			for n := range names {
				if _, err := l.DeclineListen(ctx, recKey(fmt.Sprintf("p/%d", n)), id, l.at(0)); err != nil {
					errs <- err
				}
			}
			if i%2 == 0 {
				if _, err := l.RemoveListener(ctx, id, l.at(0)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := make([]string, names)
	for n := range names {
		want[n] = fmt.Sprintf("record p/%d=%s", n, keep(n))
	}
	sort.Strings(want)
	l.wantChosen(want, "i0", "i1", "i2", "i9")
}
