package rules_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// sharedExprs are read rules on the data, with and without the user, that
// partial evaluation decides for everyone, for no one, or leaves to each.
var sharedExprs = []string{
	"data.public == true && user.id != ''",
	"data.public || user.id == data.owner",
	"data.owner == user.id",
	"data.public",
	"data.n > 1",
	"data.x",
	"data.tags.exists(t, t == user.id)",
	"data.tags.exists(t, t == 'x')",
	"user.data.role == 'admin' || data.public == true",
	"has(data.public) && data.public == true && user.claims.sub == 'x'",
	"changed.size() > 0 && user.id != ''",
	"'public' in changed",
	"$id == user.id && data.public == true",
	"$id == 'a' && data.public == true",
	"data.public == true ? user.id == 'a' : false",
	"data.missing.field == 1 || user.id == 'a'",
	"oldData.n < data.n",
	"user.data.level > data.n || !data.public",
	"size(user.id) + data.n > 3",
	// Shared values are converted to CEL whole; alone, as read: the same.
	"data == oldData",
	"data.tags == ['a', 'x'] || data.tags == []",
	"'public' in data && user.id != ''",
	"data[1] == 2",
	"data.tags[1] == 'x'",
	"data.size() > 2",
	"data.exists(k, k == 'n')",
	"data.?missing.orValue(1) == 1 && data.?n.orValue(0) == 2",
	"string(data.n) == '2'",
	"type(data) == map && type(data.tags) == list",
	"data.n == 2 && data.n == 2.0 && int(data.n) == 2",
	"data.tags.map(t, t + '!').filter(t, t == 'a!').size() == 1",
	"data.tags + ['b'] == ['a', 'x', 'b']",
	"user.data == data",
}

var sharedData = [][2]string{ // data, oldData
	{`{"public":true,"owner":"a","tags":["a","x"],"n":2,"x":"s"}`, `{"public":true,"owner":"a","tags":["a","x"],"n":2,"x":"s"}`},
	{`{"public":false,"owner":"b","tags":[],"n":0}`, `{"public":true,"n":1}`},
	{`{"public":"yes","n":"2"}`, ""},
	{"", `{"public":true}`},
	{`[1,2]`, `null`},
	{`{"public":true,"tags":"a"}`, `{"n":5}`},
}

var sharedUsers = []api.User{
	{ID: "a", Data: map[string]any{"role": "admin", "level": 3.0}, Claims: map[string]any{"sub": "x"}},
	{ID: "b", Data: map[string]any{"level": "high"}},
	{},
}

// TestSharedDecisions: the decisions made once for every query of one
// Values are the decisions each query makes alone, reasons and errors
// included, for every rule, data and user, with the queries of many
// goroutines sharing one Values (run with -race).
func TestSharedDecisions(t *testing.T) {
	var src strings.Builder
	src.WriteString("record:\n")
	for i, e := range sharedExprs {
		fmt.Fprintf(&src, "  \"r%d/$id\":\n    read: %q\n", i, e)
	}
	r := compile(t, src.String())
	ctx := context.Background()
	for _, d := range sharedData {
		v := rules.NewValues(raw(d[0]), raw(d[1]))
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i, e := range sharedExprs {
					for _, id := range []string{"a", "b"} {
						name := fmt.Sprintf("r%d/%s", i, id)
						for k, u := range sharedUsers {
							u := u
							if g%2 == 1 { // the same user, another token
								u.TokenID = "t"
							}
							q := rules.Query{Section: "record", Action: "read", Name: name, User: u, Data: raw(d[0]), OldData: raw(d[1])}
							alone := r.Decide(ctx, q, nil)
							q.Data, q.OldData, q.Values = nil, nil, v
							got := r.Decide(ctx, q, nil)
							if got.Allowed != alone.Allowed || got.Reason != alone.Reason || fmt.Sprint(got.Err) != fmt.Sprint(alone.Err) {
								t.Errorf("%s on %s/%s, user %d, name %s: shared %+v, alone %+v", e, d[0], d[1], k, name, got, alone)
							}
						}
					}
				}
			})
		}
		wg.Wait()
	}
}

// TestSharedLimits: a shared Values does not lift the cost limit or the
// deadline; a rule that fails for everyone fails for each.
func TestSharedLimits(t *testing.T) {
	ctx := context.Background()
	r := compile(t, runaway, rules.WithTimeout(0))
	v := rules.NewValues(bigList(2000), nil)
	for _, u := range sharedUsers {
		d := r.Decide(ctx, rules.Query{Section: "record", Action: "write", Name: "x", User: u, Values: v}, nil)
		if d.Allowed || d.Err == nil || !strings.Contains(d.Reason, "cost limit") {
			t.Errorf("a runaway expression, shared: %+v", d)
		}
	}
	r = compile(t, strings.Replace(runaway, "write: \"", "write: \"user.id != '' && ", 1), rules.WithTimeout(0))
	for _, u := range sharedUsers {
		d := r.Decide(ctx, rules.Query{Section: "record", Action: "write", Name: "x", User: u, Values: v}, nil)
		if d.Allowed || (u.ID != "" && (d.Err == nil || !strings.Contains(d.Reason, "cost limit"))) {
			t.Errorf("a runaway expression with the user, shared: %+v", d)
		}
	}
	r = compile(t, runaway, rules.WithCostLimit(1<<62), rules.WithTimeout(time.Millisecond))
	v = rules.NewValues(bigList(5000), nil)
	for range 2 {
		d := r.Decide(ctx, rules.Query{Section: "record", Action: "write", Name: "x", User: sharedUsers[0], Values: v}, nil)
		if d.Allowed || !errors.Is(d.Err, context.DeadlineExceeded) {
			t.Errorf("25M steps in 1ms, shared: %+v", d)
		}
	}
	// A cancelled caller's failure is its own: the next one decides.
	r = compile(t, "record:\n  x: {read: \"data.items.all(i, i >= 0)\"}\n")
	v = rules.NewValues(bigList(10), nil)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if d := r.Decide(cctx, rules.Query{Section: "record", Action: "read", Name: "x", Values: v}, nil); d.Allowed || !errors.Is(d.Err, context.Canceled) {
		t.Errorf("a cancelled context: %+v", d)
	}
	if d := r.Decide(ctx, rules.Query{Section: "record", Action: "read", Name: "x", Values: v}, nil); !d.Allowed {
		t.Errorf("after a cancelled context: %+v", d)
	}
}

// TestCostLimitBySize: an expression without loops but whose cost grows
// with its inputs is still stopped by the cost limit on large inputs, and
// allowed on small ones.
func TestCostLimitBySize(t *testing.T) {
	r := compile(t, "record:\n  x: {read: \"data.a == data.b && user.id.startsWith(data.a)\"}\n", rules.WithCostLimit(20))
	ctx := context.Background()
	for _, n := range []int{1, 10, 100, 1000, 10000} {
		s := strings.Repeat("a", n)
		data := raw(fmt.Sprintf(`{"a":%q,"b":%q}`, s, s))
		d := r.Decide(ctx, rules.Query{Section: "record", Action: "read", Name: "x", User: api.User{ID: s + "!"}, Data: data}, nil)
		big := n >= 100 // == costs a tenth of a step per character
		if d.Allowed == big || big != (d.Err != nil && strings.Contains(d.Reason, "cost limit")) {
			t.Errorf("strings of %d: %+v", n, d)
		}
	}
}
