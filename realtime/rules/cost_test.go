package rules

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

func compileOne(t *testing.T, expr string, opts ...Option) (*Rules, *rule) {
	t.Helper()
	r, err := Compile("rules.yaml", fmt.Appendf(nil, "record:\n  \"doc/$id\":\n    read: %q\n", expr), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r, r.find("record", "read", "doc/a")
}

// TestFastOnlyWhenSafe: an expression runs without the cost tracker only
// on inputs for which the tracker would never have stopped it: its actual
// cost, measured by the tracker, stays within the limit.
func TestFastOnlyWhenSafe(t *testing.T) {
	const limit = 200
	exprs := []string{
		"user.id != ''",
		"data.owner == user.id",
		"data.a == data.b",
		"'x' in data.tags",
		"data.tags.exists(t, t == user.id)",
		"data.tags.all(x, data.tags.all(y, x != y || x == y))",
		"data.text.contains(user.id) && data.text.matches('a+b')",
		"user.id + data.text == $id + data.text",
		"user.data.role == 'admin' && data.text.startsWith(user.data.role)",
		"changed.exists(k, k.startsWith('a')) && size(changed) < 5",
		"data.text.split(',').size() > 1",
	}
	var fasts int
	for _, e := range exprs {
		_, ru := compileOne(t, e, WithCostLimit(limit))
		for _, n := range []int{0, 1, 4, 16, 64, 256, 1024, 8192} {
			s := strings.Repeat("a", n)
			tags := strings.TrimSuffix(strings.Repeat(`"a",`, n), ",")
			data := fmt.Appendf(nil, `{"owner":%q,"a":%q,"b":%q,"tags":[%s],"text":"%s,b"}`, s, s, s, tags, s)
			old := fmt.Appendf(nil, `{"a%s":1}`, s)
			u := api.User{ID: s, Data: map[string]any{"role": s}}
			q := Query{Section: "record", Action: "read", Name: "doc/" + s + "x", User: u, Data: data, OldData: old}
			a := newActivation(context.Background(), ru, &q, nil)
			size := inputSize(&q, a.values)
			_, det, err := ru.expr.prg.Eval(a)
			a.release()
			cost := det.ActualCost()
			if cost == nil {
				t.Fatalf("%s: no cost tracked", e)
			}
			if ru.expr.program(size) == ru.expr.prg {
				continue
			}
			fasts++
			if *cost > limit || (err != nil && strings.Contains(err.Error(), "cost limit")) {
				t.Errorf("%s on inputs of %d (bound %d): runs without the tracker but costs %d (%v)", e, size, ru.expr.bound, *cost, err)
			}
		}
	}
	if fasts == 0 {
		t.Error("nothing ran without the tracker")
	}
}

// TestPlans: which expressions get which programs.
func TestPlans(t *testing.T) {
	for _, tt := range []struct {
		expr            string
		bound           uint64 // 0: always tracked; 1: some finite bound
		partial         bool
		usesUser, usesV bool
	}{
		{"user.id != ''", unbounded, false, true, false},
		{"data.public == true && user.id != ''", unbounded, true, true, false},
		{"data.owner == user.id", 1, true, true, false},
		{"$id == user.id", 1, false, true, true},
		{"data.items.all(x, data.items.all(y, x != y))", 1, true, false, false},
		{"user.data.name.contains(user.data.x)", 0, false, true, false},
		{"record('a/' + $id).owner == user.id", 0, false, true, true},
		{"data.at < now", unbounded, false, false, false},
	} {
		_, ru := compileOne(t, tt.expr)
		c := ru.expr
		if tt.bound == 1 && (c.bound == 0 || c.bound == unbounded) || tt.bound != 1 && c.bound != tt.bound {
			t.Errorf("%s: bound %d, want %d", tt.expr, c.bound, tt.bound)
		}
		if (c.fast != nil) != (c.bound > 0) || (c.partial != nil) != tt.partial || c.usesUser != tt.usesUser || c.usesVars != tt.usesV {
			t.Errorf("%s: %+v", tt.expr, c)
		}
	}
}

// TestSharedStates: what a partial evaluation decides for everyone.
func TestSharedStates(t *testing.T) {
	for _, tt := range []struct {
		expr, data string
		want       sharedState
	}{
		{"data.public == true && user.id != ''", `{"public":false}`, denyAll},
		{"data.public == true && user.id != ''", `{"public":true}`, perUser},
		{"data.public || user.id == data.owner", `{"public":true}`, allowAll},
		{"data.public || user.id == data.owner", `{"public":false,"owner":"a"}`, perUser},
		{"data.owner == user.id", `{"owner":"a"}`, perUser},
		{"data.n > 1", `{"n":2}`, allowAll},
		{"data.n > 1", `{}`, failAll},
		{"data.n > 1 && user.data.x", `{}`, perUser},
		{"data.tags.exists(t, t == user.id) || data.public", `{"tags":[],"public":true}`, allowAll},
		{"user.data.a.b.c == 1 && data.public", `{"public":false}`, denyAll},
		{"user.claims.exists(k, k == 'x') || data.public", `{"public":true}`, allowAll},
		{"$id == 'a' && data.public", `{"public":true}`, allowAll},
		{"$id == 'b' && data.public", `{"public":true}`, denyAll},
	} {
		r, ru := compileOne(t, tt.expr)
		q := Query{Section: "record", Action: "read", Name: "doc/a", User: api.User{ID: "a"}, Values: NewValues([]byte(tt.data), nil)}
		if e := r.shared(context.Background(), ru, &q); e.state != tt.want {
			t.Errorf("%s on %s: %d, want %d", tt.expr, tt.data, e.state, tt.want)
		}
		if e, ok := q.Values.shared.find(ru, q.Name); !ok || e.state != tt.want {
			t.Errorf("%s on %s: kept %+v %v", tt.expr, tt.data, e, ok)
		}
	}
}
