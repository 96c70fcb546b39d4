package realtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

const permRules = `record:
  "auction/item/$sellerId/$itemId":
    read: true
    create: "user.id == $sellerId"
    write: "user.data.canBid && data.price > oldData.price"
    delete: "oldData.price < 100"
    listen: "user.id == 'provider'"
  "lot/$id":
    read: "record('auction/item/sam/' + $id).seller == user.id"
  "broken/*":
    read: "record('a') == null && record('b') == null && record('c') == null && record('d') == null"
event:
  "chat/$room":
    publish: "data.text != ''"
    subscribe: true
    listen: false
rpc:
  "add-two":
    provide: "user.data.role == 'backend'"
    request: "data.x < 10"
presence:
  "*":
    read: "user.id != 'guest'"
`

func compileRules(t testing.TB, src string) *rules.Rules {
	t.Helper()
	r, err := rules.Compile("rules.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// permStore is an embedded store holding sam's lamp.
func permStore(t testing.TB) api.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	set := func(json.RawMessage, bool) (json.RawMessage, error) {
		return json.RawMessage(`{"seller":"sam","price":120}`), nil
	}
	if _, err := st.Write(context.Background(), []api.Write{{Kind: api.KindSet, Name: "auction/item/sam/lamp", Apply: set}}); err != nil {
		t.Fatal(err)
	}
	return st
}

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPermissionsActions: every realtime action reaches the rule of its
// section and action, with what API.md says it sees.
func TestPermissionsActions(t *testing.T) {
	p := realtime.NewPermissions("rules.yaml", compileRules(t, permRules), permStore(t), quiet)
	sam, bea := api.User{ID: "sam"}, api.User{ID: "bea", Data: map[string]any{"canBid": true}}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, c := range []struct {
		what string
		r    realtime.Request
		want bool
	}{
		{"read", realtime.Request{User: bea, Action: realtime.ActRead, Name: "auction/item/sam/lamp"}, true},
		{"create by the seller", realtime.Request{User: sam, Action: realtime.ActCreate, Name: "auction/item/sam/x"}, true},
		{"create by another", realtime.Request{User: bea, Action: realtime.ActCreate, Name: "auction/item/sam/x"}, false},
		{"higher bid", realtime.Request{User: bea, Action: realtime.ActWrite, Name: "auction/item/sam/lamp", Data: raw(`{"price":2}`), OldData: raw(`{"price":1}`)}, true},
		{"lower bid", realtime.Request{User: bea, Action: realtime.ActWrite, Name: "auction/item/sam/lamp", Data: raw(`{"price":1}`), OldData: raw(`{"price":2}`)}, false},
		{"shared values", realtime.Request{User: bea, Action: realtime.ActWrite, Name: "auction/item/sam/lamp", Values: rules.NewValues(raw(`{"price":3}`), raw(`{"price":2}`))}, true},
		{"delete sees oldData", realtime.Request{User: bea, Action: realtime.ActDelete, Name: "auction/item/sam/lamp", OldData: raw(`{"price":50}`)}, true},
		{"delete of a dear item", realtime.Request{User: bea, Action: realtime.ActDelete, Name: "auction/item/sam/lamp", OldData: raw(`{"price":500}`)}, false},
		{"record() finds the seller", realtime.Request{User: sam, Action: realtime.ActRead, Name: "lot/lamp"}, true},
		{"record() of a missing record is null", realtime.Request{User: sam, Action: realtime.ActRead, Name: "lot/chair"}, false},
		{"record listen", realtime.Request{User: api.User{ID: "provider"}, Action: realtime.ActListen, Name: "auction/item/sam/lamp"}, true},
		{"event listen", realtime.Request{User: api.User{ID: "provider"}, Section: realtime.SecEvent, Action: realtime.ActListen, Name: "chat/x"}, false},
		{"publish", realtime.Request{User: bea, Action: realtime.ActPublish, Name: "chat/x", Data: raw(`{"text":"hi"}`)}, true},
		{"publish empty", realtime.Request{User: bea, Action: realtime.ActPublish, Name: "chat/x", Data: raw(`{"text":""}`)}, false},
		{"subscribe", realtime.Request{User: bea, Action: realtime.ActSubscribe, Name: "chat/x"}, true},
		{"provide", realtime.Request{User: api.User{ID: "svc", Data: map[string]any{"role": "backend"}}, Action: realtime.ActProvide, Name: "add-two"}, true},
		{"provide as a user", realtime.Request{User: bea, Action: realtime.ActProvide, Name: "add-two"}, false},
		{"request", realtime.Request{User: bea, Action: realtime.ActRequest, Name: "add-two", Data: raw(`{"x":1}`)}, true},
		{"request too big", realtime.Request{User: bea, Action: realtime.ActRequest, Name: "add-two", Data: raw(`{"x":11}`)}, false},
		{"presence", realtime.Request{User: bea, Action: realtime.ActPresence, Name: "sam"}, true},
		{"presence read", realtime.Request{User: api.User{ID: "guest"}, Section: realtime.SecPresence, Action: realtime.ActRead, Name: "sam"}, false},
		{"no rule", realtime.Request{User: sam, Action: realtime.ActWrite, Name: "other"}, false},
	} {
		err := p.Allow(context.Background(), c.r)
		if (err == nil) != c.want {
			t.Errorf("%s: Allow = %v, want allowed %v", c.what, err, c.want)
		}
		if err != nil && (!api.IsCode(err, api.CodePermissionDenied) || !strings.Contains(err.Error(), c.r.Name)) {
			t.Errorf("%s: %v, want PERMISSION_DENIED naming %q", c.what, err, c.r.Name)
		}
	}
	for _, c := range []struct {
		sec  realtime.Section
		act  realtime.Action
		name string
		want bool
	}{
		{realtime.SecRecord, realtime.ActRead, "auction/item/sam/lamp", false},
		{realtime.SecRecord, realtime.ActRead, "lot/lamp", true},
		{realtime.SecRecord, realtime.ActWrite, "auction/item/sam/lamp", true},
		{realtime.SecRecord, realtime.ActListen, "auction/item/sam/lamp", false},
		{realtime.SecEvent, realtime.ActPublish, "chat/x", true},
		{realtime.SecPresence, realtime.ActPresence, "sam", false},
	} {
		if got := p.DependsOnData(c.sec, c.act, c.name); got != c.want {
			t.Errorf("DependsOnData(%s, %s, %s) = %v, want %v", c.sec, c.act, c.name, got, c.want)
		}
	}
}

// TestPermissionsLoad: Load swaps the rules at once, and a rule that
// fails is logged once per set of rules loaded, however many requests
// it denies, from however many goroutines.
func TestPermissionsLoad(t *testing.T) {
	var logs syncBuffer
	p := realtime.NewPermissions("rules.yaml", compileRules(t, permRules), permStore(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	read := realtime.Request{User: api.User{ID: "ann"}, Action: realtime.ActRead, Name: "broken/x"}
	deny := func() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					if err := p.Allow(context.Background(), read); !api.IsCode(err, api.CodePermissionDenied) {
						t.Errorf("the failing rule: %v, want PERMISSION_DENIED", err)
					}
				}
			}()
		}
		wg.Wait()
	}
	deny()
	if n := strings.Count(logs.String(), "permission rule failed"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
	if s := logs.String(); !strings.Contains(s, `"rule":"rules.yaml:11"`) || !strings.Contains(s, "more than 3 record() lookups") {
		t.Errorf("the log does not say which rule and why:\n%s", s)
	}
	if got := p.Stats.Errors.Load(); got != 80 {
		t.Errorf("Stats.Errors = %d, want 80", got)
	}
	if got := p.Stats.Count(realtime.RuleKind{Section: "record", Action: "read"}, false); got != 80 {
		t.Errorf("record read denials = %d, want 80", got)
	}

	p.Load(compileRules(t, "record:\n  \"broken/*\":\n    read: true\n"))
	if err := p.Allow(context.Background(), read); err != nil {
		t.Errorf("after Load: %v", err)
	}
	p.Load(compileRules(t, permRules))
	deny()
	if n := strings.Count(logs.String(), "permission rule failed"); n != 2 {
		t.Errorf("logged %d times over two loads of the failing rule, want twice", n)
	}
	p.Load(nil) // no rules: everything is allowed
	if err := p.Allow(context.Background(), read); err != nil {
		t.Errorf("with nil rules: %v", err)
	}
}

// BenchmarkPermissions: a decision through Access for a typical write
// rule (decoding both values) and for a record() rule (one Store read).
func BenchmarkPermissions(b *testing.B) {
	p := realtime.NewPermissions("rules.yaml", compileRules(b, permRules), permStore(b), quiet)
	ctx := context.Background()
	bea := api.User{ID: "bea", Data: map[string]any{"canBid": true}}
	before := json.RawMessage(`{"title":"A brass lamp, 1920s, working","seller":"sam","price":120,"currency":"EUR","bids":7,"bidder":"bea","tags":["lamp","brass"]}`)
	after := json.RawMessage(`{"title":"A brass lamp, 1920s, working","seller":"sam","price":125,"currency":"EUR","bids":8,"bidder":"bob","tags":["lamp","brass"]}`)
	run := func(b *testing.B, r realtime.Request) {
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Allow(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("write", func(b *testing.B) {
		run(b, realtime.Request{User: bea, Action: realtime.ActWrite, Name: "auction/item/sam/lamp", Data: after, OldData: before})
	})
	b.Run("record", func(b *testing.B) {
		run(b, realtime.Request{User: api.User{ID: "sam"}, Action: realtime.ActRead, Name: "lot/lamp"})
	})
	b.Run("constant", func(b *testing.B) {
		run(b, realtime.Request{User: bea, Action: realtime.ActRead, Name: "auction/item/sam/lamp"})
	})
}
