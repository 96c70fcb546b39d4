package api_test

import (
	"fmt"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		prefix, name string
		want         bool
	}{
		{"prices/", "prices/eur", true},
		{"prices/", "prices/eur/day", true},
		{"prices/", "prices", false},
		{"prices/", "prices/", false},
		{"prices/", "pricesx/eur", false},
		{"prices/eur/", "prices/eur", false},
		{"prices/eur/", "prices/eur/day", true},
	}
	for _, tt := range tests {
		if got := api.Covers(tt.prefix, tt.name); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.prefix, tt.name, got, tt.want)
		}
	}
}

func TestChoose(t *testing.T) {
	key := api.ListenKey{Kind: api.ListenRecord, Name: "prices/eur/day"}
	one := func(instance, stream string) []api.Demand {
		return []api.Demand{{ListenKey: key, Instance: instance, Count: 1, Stream: stream}}
	}
	l1 := api.Listener{ID: "l1", Instance: "a", Stream: "s1", Prefix: "prices/"}
	l2 := api.Listener{ID: "l2", Instance: "b", Stream: "s2", Prefix: "prices/"}
	long := api.Listener{ID: "l3", Instance: "b", Stream: "s3", Prefix: "prices/eur/"}
	other := api.Listener{ID: "l4", Instance: "a", Stream: "s4", Prefix: "rates/"}
	tests := []struct {
		name      string
		current   string
		demand    []api.Demand
		listeners []api.Listener
		want      string // "" for none
	}{
		{"no demand", "", nil, []api.Listener{l1}, ""},
		{"no demand takes the current one away", "l1", []api.Demand{{ListenKey: key, Instance: "a"}}, []api.Listener{l1}, ""},
		{"no listener", "", one("a", "x"), nil, ""},
		{"a listener of another prefix", "", one("a", "x"), []api.Listener{other}, ""},
		{"one listener", "", one("a", "x"), []api.Listener{l1, other}, "l1"},
		{"the longest prefix", "", one("a", "x"), []api.Listener{l1, long, l2}, "l3"},
		{"the longest prefix takes the name from a shorter one", "l1", one("a", "x"), []api.Listener{l1, long, l2}, "l3"},
		{"the current one keeps it", "l2", one("a", "x"), []api.Listener{l1, l2}, "l2"},
		{"the current one keeps it, listed first", "l1", one("a", "x"), []api.Listener{l1, l2}, "l1"},
		{"a gone current one is replaced", "l9", one("a", "x"), []api.Listener{l2}, "l2"},
		{"own subscription is not demand", "", one("a", "s1"), []api.Listener{l1}, ""},
		{"own subscription is not demand: another listener", "", one("a", "s1"), []api.Listener{l1, l2}, "l2"},
		{"own subscription is not demand: the current one loses it", "l1", one("a", "s1"), []api.Listener{l1, l2}, "l2"},
		{"own subscription is not demand, even of the longest prefix", "", one("b", "s3"), []api.Listener{l1, long}, "l1"},
		{"own and another stream on one instance", "", []api.Demand{{ListenKey: key, Instance: "a", Count: 2}}, []api.Listener{l1}, "l1"},
		{"own and another stream on two instances", "", append(one("a", "s1"), one("b", "y")...), []api.Listener{l1}, "l1"},
		{"the same stream on two instances (a resume) is not demand", "", append(one("a", "s1"), one("b", "s1")...), []api.Listener{l1}, ""},
		{"the same stream on two instances: another listener", "l1", append(one("a", "s1"), one("b", "s1")...), []api.Listener{l1, l2}, "l2"},
		{"the same stream on two instances and a third row", "", append(append(one("a", "s1"), one("b", "s1")...), one("c", "y")...), []api.Listener{l1}, "l1"},
		{"the same stream on one instance, two on another", "", append(one("a", "s1"), api.Demand{ListenKey: key, Instance: "b", Count: 2}), []api.Listener{l1}, "l1"},
		{"rows of count 0 do not count", "", append(one("a", "s1"), api.Demand{ListenKey: key, Instance: "b", Stream: "y"}), []api.Listener{l1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := api.Choose(key, tt.current, tt.demand, tt.listeners)
			if ok != (tt.want != "") || got.ID != tt.want {
				t.Errorf("Choose = %q, %v; want %q", got.ID, ok, tt.want)
			}
		})
	}
}

// The choice among listeners of one prefix does not depend on their
// order, and the names of a prefix spread over its listeners.
func TestChooseSpreads(t *testing.T) {
	ls := []api.Listener{
		{ID: "l1", Stream: "s1", Prefix: "p/"},
		{ID: "l2", Stream: "s2", Prefix: "p/"},
		{ID: "l3", Stream: "s3", Prefix: "p/"},
	}
	reversed := []api.Listener{ls[2], ls[1], ls[0]}
	count := map[string]int{}
	for i := range 300 {
		key := api.ListenKey{Kind: api.ListenEvent, Name: fmt.Sprintf("p/%d", i)}
		d := []api.Demand{{ListenKey: key, Instance: "a", Count: 2}}
		a, _ := api.Choose(key, "", d, ls)
		b, _ := api.Choose(key, "", d, reversed)
		if a.ID != b.ID {
			t.Fatalf("%s: %s in one order, %s in the other", key.Name, a.ID, b.ID)
		}
		count[a.ID]++
	}
	for _, l := range ls {
		if count[l.ID] < 50 {
			t.Errorf("listener %s got %d of 300 names: %v", l.ID, count[l.ID], count)
		}
	}
}
