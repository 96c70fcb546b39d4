package rules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

func compile(t testing.TB, src string, opts ...rules.Option) *rules.Rules {
	t.Helper()
	r, err := rules.Compile("rules.yaml", []byte(src), opts...)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return r
}

// records is a Records over a map that counts its lookups.
type records struct {
	mu    sync.Mutex
	data  map[string]string
	calls int
	err   error
}

func (r *records) Record(_ context.Context, name string) (json.RawMessage, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return nil, false, r.err
	}
	d, ok := r.data[name]
	return json.RawMessage(d), ok, nil
}

func raw(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// TestAuction is API.md's example: the seller creates, a bidder with
// canBid raises the price, a lower bid is refused, only the seller deletes.
func TestAuction(t *testing.T) {
	r := compile(t, auctionRules)
	seller := api.User{ID: "sam"}
	bidder := api.User{ID: "bea", Data: map[string]any{"canBid": true}}
	lurker := api.User{ID: "lou", Data: map[string]any{"canBid": false}}
	item := "auction/item/sam/lamp"
	for _, tt := range []struct {
		action  string
		user    api.User
		name    string
		data    string
		oldData string
		want    bool
	}{
		{"create", seller, item, `{"price":10}`, "", true},
		{"create", bidder, item, `{"price":10}`, "", false},
		{"create", seller, "auction/item/bea/lamp", `{"price":10}`, "", false},
		{"read", lurker, item, `{"price":10}`, "", true},
		{"write", bidder, item, `{"price":12,"by":"bea"}`, `{"price":10}`, true},
		{"write", bidder, item, `{"price":11.5}`, `{"price":12,"by":"bea"}`, false},
		{"write", bidder, item, `{"price":12}`, `{"price":12}`, false},
		{"write", lurker, item, `{"price":99}`, `{"price":12}`, false},
		{"write", seller, item, `{"price":99}`, `{"price":12}`, false}, // no canBid at all: an error, denied
		{"delete", bidder, item, "", `{"price":12}`, false},
		{"delete", seller, item, "", `{"price":12}`, true},
		{"publish", bidder, "chat/lobby", `"hi"`, "", true},
		{"publish", api.User{}, "chat/lobby", `"hi"`, "", false},
		{"subscribe", api.User{}, "chat/lobby", "", "", true},
		{"subscribe", api.User{}, "chat/lobby/x", "", "", false},
		{"provide", api.User{ID: "b", Data: map[string]any{"role": "backend"}}, "add-two", "", "", true},
		{"provide", bidder, "add-two", "", "", false},
		{"request", bidder, "add-two", `{"a":1}`, "", true},
	} {
		section := "record"
		if s, ok := rules.SectionOf(tt.action); ok {
			section = s
		}
		d := r.Decide(context.Background(), rules.Query{Section: section, Action: tt.action, Name: tt.name, User: tt.user, Data: raw(tt.data), OldData: raw(tt.oldData)}, nil)
		if d.Allowed != tt.want {
			t.Errorf("%s %s by %q (%s <- %s): %+v, want allowed %v", tt.action, tt.name, tt.user.ID, tt.data, tt.oldData, d, tt.want)
		}
	}
	d := r.Decide(context.Background(), rules.Query{Section: "presence", Action: "read", Name: "anyone"}, nil)
	if !d.Allowed || d.Pattern != "*" || d.Line != 17 {
		t.Errorf("presence read: %+v", d)
	}
}

func TestDecision(t *testing.T) {
	r := compile(t, "record:\n  \"a/$x\":\n    read: \"$x == 'yes'\"\n    write: false\n")
	ctx := context.Background()
	d := r.Decide(ctx, rules.Query{Section: "record", Action: "read", Name: "a/yes"}, nil)
	if want := (rules.Decision{Allowed: true, Pattern: "a/$x", Rule: "$x == 'yes'", Line: 3, Reason: "the expression is true"}); d != want {
		t.Errorf("%+v, want %+v", d, want)
	}
	d = r.Decide(ctx, rules.Query{Section: "record", Action: "write", Name: "a/yes"}, nil)
	if d.Allowed || d.Rule != "false" || d.Line != 4 || d.Err != nil {
		t.Errorf("write: %+v", d)
	}
	for _, q := range []rules.Query{
		{Section: "record", Action: "delete", Name: "a/yes"},
		{Section: "record", Action: "read", Name: "b/yes"},
		{Section: "event", Action: "read", Name: "a/yes"},
		{Section: "", Action: "", Name: ""},
	} {
		if d := r.Decide(ctx, q, nil); d.Allowed || d.Pattern != "" || d.Reason == "" {
			t.Errorf("%+v: %+v", q, d)
		}
	}
	var none *rules.Rules
	if d := none.Decide(ctx, rules.Query{Section: "record", Action: "delete", Name: "x"}, nil); !d.Allowed {
		t.Errorf("nil rules: %+v", d)
	}
	empty := compile(t, "")
	if d := empty.Decide(ctx, rules.Query{Section: "record", Action: "read", Name: "x"}, nil); d.Allowed {
		t.Errorf("empty rules: %+v", d)
	}
}

func TestChanged(t *testing.T) {
	r := compile(t, `record:
  "*":
    write: "changed == ['price']"
    create: "changed == ['by', 'price']"
    delete: "changed == ['by', 'price']"
    read: "changed == []"
`)
	for _, tt := range []struct {
		action, data, oldData string
		want                  bool
	}{
		{"write", `{"price":2,"by":"a"}`, `{"price":1,"by":"a"}`, true},
		{"write", `{"price":2,"by":"b"}`, `{"price":1,"by":"a"}`, false},
		{"write", `{"price":2,"by":{"n":[1,2]}}`, `{"by":{"n":[1,2]},"price":1}`, true},
		{"write", `{"price":2,"by":{"n":[1,3]}}`, `{"by":{"n":[1,2]},"price":1}`, false}, // a nested change counts
		{"write", `{"price":2}`, `{"price":1,"by":"a"}`, false},                          // a removed key counts
		{"write", `{"price":1}`, `{"price":1.0}`, false},                                 // nothing changed
		{"create", `{"price":1,"by":"a"}`, ``, true},
		{"delete", ``, `{"price":1,"by":"a"}`, true},
		{"read", `{"price":1}`, ``, false},
		{"write", `[1]`, `{"price":1}`, true}, // not an object: no keys
	} {
		d := r.Decide(context.Background(), rules.Query{Section: "record", Action: tt.action, Name: "x", Data: raw(tt.data), OldData: raw(tt.oldData)}, nil)
		if d.Allowed != tt.want {
			t.Errorf("%s %s <- %s: %+v, want %v", tt.action, tt.data, tt.oldData, d, tt.want)
		}
	}
}

func TestRecordLookups(t *testing.T) {
	r := compile(t, `record:
  "zero": {read: "true || record('r/1') == null"}
  "one": {read: "record('r/1').ok == true"}
  "missing": {read: "record('nope') == null"}
  "three": {read: "[record('r/1'), record('r/2'), record('r/3')].all(x, x.ok)"}
  "four": {read: "[record('r/1'), record('r/2'), record('r/3')].all(x, x.ok) && (record('r/4') == null || true)"}
  "again": {read: "[1, 2, 3, 4, 5, 6].all(i, record('r/1').ok && record('r/' + string(i % 3 + 1)).ok)"}
  "users/$id": {read: "record('profiles/' + $id).owner == user.id"}
`)
	for _, tt := range []struct {
		name    string
		user    string
		allowed bool
		calls   int
		err     bool
	}{
		{"zero", "", true, 0, false},
		{"one", "", true, 1, false},
		{"missing", "", true, 1, false},
		{"three", "", true, 3, false},
		{"four", "", false, 3, true}, // the 4th denies, even where || would absorb its error
		{"again", "", true, 3, false},
		{"users/ann", "ann", true, 1, false},
		{"users/ann", "bob", false, 1, false},
		{"users/bob", "bob", false, 1, true}, // no profile: null.owner is an error
	} {
		recs := &records{data: map[string]string{
			"r/1": `{"ok":true}`, "r/2": `{"ok":true}`, "r/3": `{"ok":true}`, "r/4": `{"ok":true}`,
			"profiles/ann": `{"owner":"ann"}`,
		}}
		d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "read", Name: tt.name, User: api.User{ID: tt.user}}, recs)
		if d.Allowed != tt.allowed || recs.calls != tt.calls || (d.Err != nil) != tt.err {
			t.Errorf("%s as %q: %+v after %d lookups, want allowed %v after %d, error %v", tt.name, tt.user, d, recs.calls, tt.allowed, tt.calls, tt.err)
		}
		if tt.name == "four" && !errors.Is(d.Err, rules.ErrTooManyLookups) {
			t.Errorf("four: %v, want ErrTooManyLookups", d.Err)
		}
	}
	// A failed lookup denies, and so does no Records at all.
	failing := &records{err: errors.New("store down")}
	if d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "read", Name: "missing"}, failing); d.Allowed || d.Err == nil || !strings.Contains(d.Reason, "store down") {
		t.Errorf("failing lookup: %+v", d)
	}
	if d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "read", Name: "missing"}, nil); d.Allowed || d.Err == nil {
		t.Errorf("no records: %+v", d)
	}
}

// bigList is data with a list of n numbers.
func bigList(n int) json.RawMessage {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, i)
	}
	b.WriteString(`]}`)
	return json.RawMessage(b.String())
}

const runaway = "record:\n  \"*\":\n    write: \"data.items.all(x, data.items.all(y, x != y || x == y))\"\n"

func TestCostLimit(t *testing.T) {
	r := compile(t, runaway, rules.WithTimeout(0)) // the cost limit alone
	q := rules.Query{Section: "record", Action: "write", Name: "x", Data: bigList(10)}
	if d := r.Decide(context.Background(), q, nil); !d.Allowed {
		t.Fatalf("a small list: %+v", d)
	}
	q.Data = bigList(2000)
	d := r.Decide(context.Background(), q, nil)
	if d.Allowed || d.Err == nil || !strings.Contains(d.Reason, "cost limit") {
		t.Errorf("a runaway expression: %+v", d)
	}
}

func TestDeadline(t *testing.T) {
	r := compile(t, runaway, rules.WithCostLimit(1<<62), rules.WithTimeout(time.Millisecond))
	q := rules.Query{Section: "record", Action: "write", Name: "x", Data: bigList(5000)}
	d := r.Decide(context.Background(), q, nil)
	if d.Allowed || !errors.Is(d.Err, context.DeadlineExceeded) {
		t.Errorf("25M steps in 1ms: %+v", d)
	}
	// The caller's context bounds it too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Data = bigList(1)
	if d := r.Decide(ctx, q, nil); d.Allowed || !errors.Is(d.Err, context.Canceled) {
		t.Errorf("a cancelled context: %+v", d)
	}
}

func TestValues(t *testing.T) {
	r := compile(t, `record:
  "dyn": {read: "data.x"}
  "num": {read: "data.n > 1 && data.n == 2 && data.f < 2.5 && size(data.list) == 2"}
  "opt": {read: "data.?missing.orValue(7) == 7"}
  "claims": {read: "user.claims.role == 'admin' && user.claims.exp > 100"}
  "has": {read: "!has(user.claims.role) && !has(user.data.x)"}
  "now": {read: "now > timestamp('2030-01-01T00:00:00Z')"}
  "name/$x": {read: "name == 'name/' + $x && name.endsWith($x)"}
`)
	admin := api.User{ID: "a", Claims: map[string]any{"role": "admin", "exp": float64(200)}}
	for _, tt := range []struct {
		name, data string
		user       api.User
		now        time.Time
		want       bool
		err        bool
	}{
		{"dyn", `{"x":true}`, api.User{}, time.Time{}, true, false},
		{"dyn", `{"x":1}`, api.User{}, time.Time{}, false, true}, // not a bool
		{"dyn", `{"y":1}`, api.User{}, time.Time{}, false, true},
		{"dyn", `{"x":`, api.User{}, time.Time{}, false, true}, // not JSON
		{"num", `{"n":2,"f":2.4,"list":[1,"a"]}`, api.User{}, time.Time{}, true, false},
		{"opt", `{}`, api.User{}, time.Time{}, true, false},
		{"claims", ``, admin, time.Time{}, true, false},
		{"claims", ``, api.User{ID: "b"}, time.Time{}, false, true},
		{"has", ``, api.User{}, time.Time{}, true, false},
		{"has", ``, admin, time.Time{}, false, false},
		{"now", ``, api.User{}, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), true, false},
		{"now", ``, api.User{}, time.Time{}, time.Now().After(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), false},
		{"name/z", ``, api.User{}, time.Time{}, true, false},
	} {
		d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "read", Name: tt.name, User: tt.user, Data: raw(tt.data), Now: tt.now}, nil)
		if d.Allowed != tt.want || (d.Err != nil) != tt.err {
			t.Errorf("%s %s: %+v, want allowed %v, error %v", tt.name, tt.data, d, tt.want, tt.err)
		}
	}
}

func TestDependsOnData(t *testing.T) {
	r := compile(t, `record:
  "a/*": {read: "user.id != ''", write: "data.x == 1", delete: "oldData == null"}
  "b/*": {read: "changed.size() > 0", write: "record('x') == null", delete: "now > timestamp('2000-01-01T00:00:00Z')"}
  "c/*": {read: true}
  "d/$x": {read: "$x == user.id || name == 'q'"}
`)
	for _, tt := range []struct {
		action, name string
		want         bool
	}{
		{"read", "a/1", false}, {"write", "a/1", true}, {"delete", "a/1", true},
		{"read", "b/1", true}, {"write", "b/1", true}, {"delete", "b/1", true},
		{"read", "c/1", false}, {"read", "d/1", false}, {"read", "e", false},
	} {
		if got := r.DependsOnData("record", tt.action, tt.name); got != tt.want {
			t.Errorf("%s %s: %v, want %v", tt.action, tt.name, got, tt.want)
		}
	}
	var none *rules.Rules
	if none.DependsOnData("record", "read", "a/1") {
		t.Error("nil rules depend on data")
	}
}

// TestSharedValues: one Values serves the queries of many subscribers at
// once, and means what Data and OldData mean.
func TestSharedValues(t *testing.T) {
	r := compile(t, "record:\n  \"u/$id\":\n    read: \"data.owner == $id && changed == ['owner'] && oldData.owner != $id\"\n")
	v := rules.NewValues(raw(`{"owner":"u3","n":1}`), raw(`{"owner":"u1","n":1}`))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("u/u%d", i)
			d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "read", Name: name, Values: v}, nil)
			if d.Allowed != (i == 3) {
				t.Errorf("%s: %+v", name, d)
			}
		})
	}
	wg.Wait()
	if got := v.Changed(); fmt.Sprint(got) != "[owner]" {
		t.Errorf("Changed: %v", got)
	}
}

// TestConcurrentDecide: one Rules serves many goroutines (run with -race).
func TestConcurrentDecide(t *testing.T) {
	r := compile(t, auctionRules+"  \"x/$id\":\n    read: \"record('y/' + $id) != null && changed.size() >= 0\"\n")
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			recs := &records{data: map[string]string{"y/1": `{}`}}
			for i := range 200 {
				old, next := fmt.Sprintf(`{"price":%d}`, i), fmt.Sprintf(`{"price":%d}`, i+g%2)
				d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "write", Name: "auction/item/s/i",
					User: api.User{ID: "b", Data: map[string]any{"canBid": true}}, Data: raw(next), OldData: raw(old)}, recs)
				if d.Allowed != (g%2 == 1) {
					t.Errorf("goroutine %d: %+v", g, d)
					return
				}
				if d := r.Decide(context.Background(), rules.Query{Section: "presence", Action: "read", Name: "x/1", Data: raw(next)}, recs); !d.Allowed {
					t.Errorf("presence: %+v", d)
					return
				}
			}
		})
	}
	wg.Wait()
}
