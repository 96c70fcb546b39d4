package realtime

import (
	"fmt"
	"slices"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// TestDistinct: repeats go, the first of each stays in its place, and a
// list without repeats is returned as it is; with few subscriptions
// (compared pairwise) and with many (a map).
func TestDistinct(t *testing.T) {
	a, b, c := api.Subscription{Record: "a"}, api.Subscription{Record: "a", Path: "x"}, api.Subscription{Event: "a"}
	for _, tt := range []struct{ in, want []api.Subscription }{
		{nil, nil},
		{[]api.Subscription{a}, []api.Subscription{a}},
		{[]api.Subscription{a, b, c}, []api.Subscription{a, b, c}},
		{[]api.Subscription{a, a}, []api.Subscription{a}},
		{[]api.Subscription{a, b, a, c, b, c}, []api.Subscription{a, b, c}},
	} {
		if got := distinct(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("distinct(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	var many, want []api.Subscription
	for i := range 40 {
		x := api.Subscription{Record: fmt.Sprint("r", i%25)}
		many = append(many, x)
		if i < 25 {
			want = append(want, x)
		}
	}
	if got := distinct(many); !slices.Equal(got, want) {
		t.Errorf("distinct of 40 with 15 repeats = %v, want %v", got, want)
	}
	if got := distinct(want); &got[0] != &want[0] {
		t.Error("a list without repeats was copied")
	}
}
