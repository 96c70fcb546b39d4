package realtime_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// permFixture is a hub under permission rules, with services that write
// without asking them (the tests are about what streams read).
type permFixture struct {
	store    *embedded.Store
	hub      *realtime.Hub
	access   *realtime.RulesAccess
	records  *realtime.Records
	events   *realtime.Events
	presence *realtime.Presence
}

func newPermFixture(t *testing.T, src string, withPresence bool) *permFixture {
	store := newStore(t)
	access := realtime.NewRulesAccess(t, src)
	hub := realtime.NewHub(store, store.Bus(), access, realtime.HubConfig{
		Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
	}, quiet)
	f := &permFixture{store: store, hub: hub, access: access,
		records: realtime.NewRecords(store, realtime.AllowAll{}, 1<<20), events: realtime.NewEvents(store, realtime.AllowAll{})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if withPresence {
		f.presence = realtime.NewPresence(store, store.Bus(), access, realtime.PresenceConfig{
			Instance: realtime.NewInstanceID(), LeaveGrace: 10 * time.Millisecond, Refresh: 20 * time.Millisecond,
		}, quiet)
		hub.SetPresence(f.presence, f.presence)
		wg.Add(1)
		go func() { defer wg.Done(); f.presence.Run(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); hub.Run(ctx) }()
	t.Cleanup(func() { hub.Drain(); cancel(); wg.Wait() })
	return f
}

func (f *permFixture) put(t *testing.T, name, data string) {
	t.Helper()
	if _, err := f.records.Write(context.Background(), api.User{}, []realtime.Op{{Op: "put", Name: name, Data: []byte(data)}}); err != nil {
		t.Fatal(err)
	}
}

func (f *permFixture) del(t *testing.T, name string) {
	t.Helper()
	if _, err := f.records.Write(context.Background(), api.User{}, []realtime.Op{{Op: "delete", Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func (f *permFixture) publish(t *testing.T, name, data string) {
	t.Helper()
	if _, err := f.events.Publish(context.Background(), api.User{}, name, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

// wire is a client's connection: its frames, and every byte it read.
type wire struct {
	frames <-chan sseFrame
	mu     sync.Mutex
	raw    bytes.Buffer
	stream *realtime.Stream
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.raw.Write(p)
}

// bytes returns what the client read so far.
func (w *wire) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.raw.Bytes())
}

// mustNotHave fails the test if any of secrets was read from the wire.
func (w *wire) mustNotHave(t *testing.T, secrets ...string) {
	t.Helper()
	raw := w.bytes()
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the wire carried %q:\n%s", s, raw)
		}
	}
}

// dial opens a stream and serves it with writer, keeping the raw bytes.
func dial(t *testing.T, hub *realtime.Hub, writer string, user api.User, subs ...api.Subscription) *wire {
	t.Helper()
	s, err := hub.Open(context.Background(), user, subs, "")
	if err != nil {
		t.Fatal(err)
	}
	var r io.ReadCloser
	if writer == "goroutine" {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { pw.CloseWithError(s.Run(ctx, &pipeSink{w: pw})) }()
		r = pr
		t.Cleanup(func() { cancel(); pr.Close() })
	} else {
		var server net.Conn
		server, r = tcpPair(t)
		go func() {
			if err := s.Detach(context.Background(), server); err != nil {
				server.Close()
			}
		}()
		t.Cleanup(func() { r.Close() })
	}
	w := &wire{stream: s}
	out := make(chan sseFrame, 256)
	w.frames = out
	go func() {
		defer close(out)
		sc := bufio.NewScanner(io.TeeReader(r, w))
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				f.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				f.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				f.data = line[6:]
			case line == "" && f.event != "":
				out <- f
				f = sseFrame{}
			}
		}
	}()
	return w
}

// expect reads the next frames and fails unless they are want, each
// "event data" (a prefix of the data ending in "..." matches).
func (w *wire) expect(t *testing.T, want ...string) (ids []string) {
	t.Helper()
	for _, wf := range want {
		var got string
		select {
		case f, ok := <-w.frames:
			if !ok {
				t.Fatalf("stream closed; want %s", wf)
			}
			got = f.event + " " + f.data
			ids = append(ids, f.id)
		case <-time.After(5 * time.Second):
			t.Fatalf("no frame in 5s; want %s", wf)
		}
		if p, ok := strings.CutSuffix(wf, "..."); ok && strings.HasPrefix(got, p) {
			continue
		}
		if got != wf {
			t.Fatalf("got  %s\nwant %s", got, wf)
		}
	}
	return ids
}

// quiet checks that no frame comes within d.
func (w *wire) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case f := <-w.frames:
		t.Fatalf("unexpected frame %s %s", f.event, f.data)
	case <-time.After(d):
	}
}

var permWriters = []string{"goroutine", "pool"}

// TestStreamForbiddenRecord: a stream subscribed to an allowed and a
// forbidden record gets a denied frame for the one and every change of
// the other; the forbidden data never appears on the wire.
func TestStreamForbiddenRecord(t *testing.T) {
	const src = `
record:
  "pub/*":
    read: true
  "secret/*":
    read: false
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, false)
			f.put(t, "secret/b", `{"s":"SECRET-0"}`)
			f.put(t, "pub/a", `{"n":0}`)
			w := dial(t, f.hub, writer, api.User{ID: "u"}, api.Subscription{Record: "pub/a"}, api.Subscription{Record: "secret/b"})
			w.expect(t, `ready {"stream":...`, `denied {"subscription":{"record":"secret/b"},"code":"PERMISSION_DENIED"}`,
				`snapshot {"name":"pub/a","version":1,"data":{"n":0}}`)
			for i := 1; i <= 5; i++ {
				f.put(t, "secret/b", `{"s":"SECRET-`+string(rune('0'+i))+`"}`)
				f.put(t, "pub/a", `{"n":`+string(rune('0'+i))+`}`)
			}
			for i := 1; i <= 5; i++ {
				w.expect(t, `record {"name":"pub/a","version":`+string(rune('1'+i))+`,"data":{"n":`+string(rune('0'+i))+`},"op":"set"}`)
			}
			w.mustNotHave(t, "SECRET")
		})
	}
}

// TestStreamReadRuleOnData: a read rule on data decides the snapshot and
// every change; when it refuses, the subscription gets a denied frame and
// nothing more of that record, while the stream's other subscriptions go
// on.
func TestStreamReadRuleOnData(t *testing.T) {
	const src = `
record:
  "doc/$id":
    read: "data.public == true"
  "other":
    read: true
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, false)
			f.put(t, "doc/1", `{"public":true,"v":1}`)
			f.put(t, "doc/2", `{"public":false,"v":"HIDDEN-AT-START"}`)
			w := dial(t, f.hub, writer, api.User{ID: "u"},
				api.Subscription{Record: "doc/1"}, api.Subscription{Record: "doc/1", Path: "v"},
				api.Subscription{Record: "doc/2"}, api.Subscription{Record: "other"})
			w.expect(t, `ready {"stream":...`,
				`snapshot {"name":"doc/1","version":1,"data":{"public":true,"v":1}}`,
				`snapshot {"name":"doc/1","version":1,"path":"v","data":1}`,
				`denied {"subscription":{"record":"doc/2"},"code":"PERMISSION_DENIED"}`,
				`snapshot {"name":"other","version":0,"data":null}`)
			f.put(t, "doc/1", `{"public":true,"v":2}`)
			before := w.expect(t, `record {"name":"doc/1","version":2,"data":{"public":true,"v":2},"op":"set"}`,
				`record {"name":"doc/1","version":2,"path":"v","data":2,"op":"set"}`)
			f.put(t, "doc/1", `{"public":false,"v":"SECRET-FLIP"}`)
			ids := w.expect(t, `denied {"subscription":{"record":"doc/1"},"code":"PERMISSION_DENIED"}`,
				`denied {"subscription":{"record":"doc/1","path":"v"},"code":"PERMISSION_DENIED"}`)
			// A denial that a change caused carries the change's id, as
			// its other frames would.
			if ids[0] == "" || ids[1] != ids[0] || ids[0] == before[0] {
				t.Fatalf("the denials' ids %q, want the flip's own (the change before: %q)", ids, before[0])
			}
			f.put(t, "doc/1", `{"public":true,"v":"AFTER-END"}`)
			f.put(t, "doc/2", `{"public":true,"v":"DENIED-AT-START"}`)
			f.put(t, "other", `{"end":1}`)
			w.expect(t, `record {"name":"other","version":1,"data":{"end":1},"op":"set"}`)
			w.mustNotHave(t, "SECRET", "HIDDEN", "AFTER-END", "DENIED-AT-START")
		})
	}
}

// TestStreamEventWildcard: event=chat/* and event=* carry only the events
// whose own name the user may subscribe to.
func TestStreamEventWildcard(t *testing.T) {
	const src = `
event:
  "chat/$room":
    subscribe: "$room != 'staff' || user.data.staff == true"
  "news":
    subscribe: true
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, false)
			guest := dial(t, f.hub, writer, api.User{ID: "guest", TokenID: "g"}, api.Subscription{Event: "chat/*"}, api.Subscription{Event: "*"})
			staff := dial(t, f.hub, writer, api.User{ID: "boss", TokenID: "b", Data: map[string]any{"staff": true}}, api.Subscription{Event: "chat/*"})
			guest.expect(t, `ready {"stream":...`)
			staff.expect(t, `ready {"stream":...`)
			f.publish(t, "chat/staff", `"STAFF-ONLY"`)
			f.publish(t, "secret", `"NO-RULE"`)
			f.publish(t, "chat/lobby", `"hello"`)
			f.publish(t, "news", `"extra"`)
			guest.expect(t, `event {"name":"chat/lobby","data":"hello"...`, `event {"name":"news","data":"extra"...`)
			staff.expect(t, `event {"name":"chat/staff","data":"STAFF-ONLY"...`, `event {"name":"chat/lobby","data":"hello"...`)
			guest.mustNotHave(t, "STAFF-ONLY", "chat/staff", "NO-RULE")
			staff.mustNotHave(t, "NO-RULE")
		})
	}
}

// TestStreamCollectionFiltered: a collection sends only the records its
// user may read, at the snapshot and on every change, never their names;
// delete frames go only where the record could be read before.
func TestStreamCollectionFiltered(t *testing.T) {
	const src = `
record:
  "doc/$id":
    read: "data.public == true"
  "doc/locked":
    read: false
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, false)
			f.put(t, "doc/a", `{"public":true}`)
			f.put(t, "doc/b-hidden", `{"public":false}`)
			f.put(t, "doc/locked", `{"public":true,"x":"LOCKED"}`)
			w := dial(t, f.hub, writer, api.User{ID: "u"}, api.Subscription{Record: "doc/*"})
			w.expect(t, `ready {"stream":...`, `snapshot {"name":"doc/a","version":1,"data":{"public":true}}`,
				`synced {"record":"doc/*","count":1}`)
			f.put(t, "doc/c-hidden", `{"public":false}`) // created unreadable
			f.put(t, "doc/locked", `{"public":true,"x":"LOCKED-2"}`)
			f.del(t, "doc/b-hidden") // was never readable: no delete frame
			f.del(t, "doc/locked")
			f.put(t, "doc/a", `{"public":false,"x":"SECRET-A"}`) // now hidden
			f.del(t, "doc/a")                                    // could not be read before: no delete frame
			f.put(t, "doc/d", `{"public":true}`)
			f.del(t, "doc/d")
			w.expect(t, `record {"name":"doc/d","version":1,"data":{"public":true},"op":"set"}`, `delete {"name":"doc/d","version":2}`)
			w.none(t, 100*time.Millisecond)
			w.mustNotHave(t, "hidden", "locked", "SECRET")
		})
	}
}

// TestStreamDeleteFrames: a delete frame goes to a subscriber of the
// record who could read it, and not to one whose subscription was
// refused.
func TestStreamDeleteFrames(t *testing.T) {
	const src = `
record:
  "doc/$id":
    read: "data.owner == user.id"
  "end":
    read: true
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, false)
			f.put(t, "doc/1", `{"owner":"ann"}`)
			ann := dial(t, f.hub, writer, api.User{ID: "ann", TokenID: "a"}, api.Subscription{Record: "doc/1"}, api.Subscription{Record: "end"})
			bob := dial(t, f.hub, writer, api.User{ID: "bob", TokenID: "b"}, api.Subscription{Record: "doc/1"}, api.Subscription{Record: "end"})
			ann.expect(t, `ready {"stream":...`, `snapshot {"name":"doc/1","version":1,"data":{"owner":"ann"}}`, `snapshot {"name":"end"...`)
			bob.expect(t, `ready {"stream":...`, `denied {"subscription":{"record":"doc/1"},"code":"PERMISSION_DENIED"}`, `snapshot {"name":"end"...`)
			f.del(t, "doc/1")
			f.put(t, "end", `1`)
			ann.expect(t, `delete {"name":"doc/1","version":2}`, `record {"name":"end"...`)
			bob.expect(t, `record {"name":"end"...`)
			bob.mustNotHave(t, "delete", `"owner"`)
		})
	}
}

// TestStreamNoEvaluationPerDelivery: a read rule that does not depend on
// the data is asked once per subscription, not per delivery; one that
// does is asked on every delivery (the change decoded once for all).
func TestStreamNoEvaluationPerDelivery(t *testing.T) {
	const src = `
record:
  "fixed":
    read: "user.id == 'u'"
  "live":
    read: "data.n >= 0"
`
	f := newPermFixture(t, src, false)
	user := api.User{ID: "u", TokenID: "t"}
	w1 := dial(t, f.hub, "pool", user, api.Subscription{Record: "fixed"})
	w2 := dial(t, f.hub, "goroutine", user, api.Subscription{Record: "fixed"})
	w1.expect(t, `ready {"stream":...`, `snapshot {"name":"fixed"...`)
	w2.expect(t, `ready {"stream":...`, `snapshot {"name":"fixed"...`)
	before := f.access.Allows.Load()
	for i := range 20 {
		f.put(t, "fixed", `{"n":`+string(rune('0'+i%10))+`}`)
	}
	for range 20 {
		w1.expect(t, `record {"name":"fixed"...`)
		w2.expect(t, `record {"name":"fixed"...`)
	}
	if n := f.access.Allows.Load() - before; n != 0 {
		t.Fatalf("%d evaluations for 40 deliveries under a rule that does not read data; want 0", n)
	}
	f.put(t, "live", `{"n":0}`)
	l1 := dial(t, f.hub, "pool", user, api.Subscription{Record: "live"})
	l2 := dial(t, f.hub, "goroutine", user, api.Subscription{Record: "live"})
	l1.expect(t, `ready {"stream":...`, `snapshot {"name":"live"...`)
	l2.expect(t, `ready {"stream":...`, `snapshot {"name":"live"...`)
	before = f.access.Allows.Load()
	for i := 1; i <= 10; i++ {
		f.put(t, "live", `{"n":`+string(rune('0'+i%10))+`}`)
	}
	for range 10 {
		l1.expect(t, `record {"name":"live"...`)
		l2.expect(t, `record {"name":"live"...`)
	}
	if n := f.access.Allows.Load() - before; n != 20 {
		t.Fatalf("%d evaluations for 10 changes to 2 streams; want one per delivery, 20", n)
	}
}

// TestStreamRulesChanged: new rules deny open subscriptions they no longer
// allow (with a denied frame), keep the others, and apply to wildcards
// from then on.
func TestStreamRulesChanged(t *testing.T) {
	const before = `
record:
  "a":
    read: true
  "b":
    read: true
  "c":
    read: "data.ok == true"
event:
  "chat/*":
    subscribe: true
`
	const after = `
record:
  "a":
    read: true
  "b":
    read: false
  "c":
    read: "data.ok == true && data.v < 2"
event:
  "chat/lobby":
    subscribe: true
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, before, false)
			f.put(t, "c", `{"ok":true,"v":1}`)
			w := dial(t, f.hub, writer, api.User{ID: "u"}, api.Subscription{Record: "a"}, api.Subscription{Record: "b"},
				api.Subscription{Record: "c"}, api.Subscription{Event: "chat/*"})
			w.expect(t, `ready {"stream":...`, `snapshot {"name":"a"...`, `snapshot {"name":"b"...`, `snapshot {"name":"c"...`)
			f.publish(t, "chat/staff", `"before"`)
			w.expect(t, `event {"name":"chat/staff","data":"before"...`)
			f.put(t, "c", `{"ok":true,"v":5}`) // still readable under the first rules
			w.expect(t, `record {"name":"c","version":2...`)
			f.access.Swap(t, after)
			f.hub.RulesChanged()
			w.expect(t, `denied {"subscription":{"record":"b"},"code":"PERMISSION_DENIED"}`,
				`denied {"subscription":{"record":"c"},"code":"PERMISSION_DENIED"}`)
			f.put(t, "b", `"SECRET-B"`)
			f.put(t, "c", `{"ok":true,"v":1,"s":"SECRET-C"}`)
			f.publish(t, "chat/staff", `"SECRET-EVENT"`)
			f.publish(t, "chat/lobby", `"hi"`)
			f.put(t, "a", `1`)
			w.expect(t, `event {"name":"chat/lobby","data":"hi"...`, `record {"name":"a","version":1,"data":1,"op":"set"}`)
			w.mustNotHave(t, "SECRET")
		})
	}
}

// TestStreamAddedSubscriptionRefused: a subscription added to an open
// stream that the rules refuse gets a denied frame there; an allowed one
// its snapshot.
func TestStreamAddedSubscriptionRefused(t *testing.T) {
	const src = `
record:
  "ok":
    read: true
  "doc/$id":
    read: "data.public == true"
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, false)
			f.put(t, "doc/1", `{"public":false,"s":"SECRET"}`)
			user := api.User{ID: "u"}
			w := dial(t, f.hub, writer, user, api.Subscription{Record: "ok"})
			w.expect(t, `ready {"stream":...`, `snapshot {"name":"ok"...`)
			ctx := context.Background()
			for _, x := range []api.Subscription{{Record: "nope"}, {Record: "doc/1"}, {Record: "ok", Path: "x"}} {
				if err := f.hub.ChangeSubscription(ctx, user, w.stream.ID, x, true); err != nil {
					t.Fatal(err)
				}
			}
			w.expect(t, `denied {"subscription":{"record":"nope"},"code":"PERMISSION_DENIED"}`,
				`denied {"subscription":{"record":"doc/1"},"code":"PERMISSION_DENIED"}`,
				`snapshot {"name":"ok","version":0,"path":"x","data":null}`)
			f.put(t, "doc/1", `{"public":false,"s":"SECRET-2"}`)
			f.put(t, "ok", `{"x":1}`)
			w.expect(t, `record {"name":"ok"...`, `record {"name":"ok","version":1,"path":"x"...`)
			w.mustNotHave(t, "SECRET")
			info, err := f.store.GetStream(ctx, w.stream.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Subs) != 2 {
				t.Fatalf("stored subscriptions %v; want the two allowed ones", info.Subs)
			}
		})
	}
}

// TestStreamPresenceFiltered: presence=* carries only the users the
// subscriber may see, at its start and as they come and go.
func TestStreamPresenceFiltered(t *testing.T) {
	const src = `
presence:
  "$u":
    read: "!$u.startsWith('ghost')"
`
	for _, writer := range permWriters {
		t.Run(writer, func(t *testing.T) {
			f := newPermFixture(t, src, true)
			for _, u := range []string{"ann", "ghost-1"} {
				s, err := f.hub.Open(context.Background(), api.User{ID: u}, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				go s.Run(ctx, discardSink{})
				t.Cleanup(cancel)
			}
			eventually(t, "ann and ghost-1 online", func() bool {
				on, err := f.store.Online(context.Background(), time.Now(), []string{"ann", "ghost-1"})
				return err == nil && len(on) == 2
			})
			w := dial(t, f.hub, writer, api.User{}, api.Subscription{Presence: "*"}, api.Subscription{Presence: "ghost-2"})
			w.expect(t, `ready {"stream":...`, `denied {"subscription":{"presence":"ghost-2"},"code":"PERMISSION_DENIED"}`,
				`presence {"user":"ann","online":true}`)
			for _, u := range []string{"ghost-2", "bob"} { // ghost-2 first: its frame would come before bob's
				s, err := f.hub.Open(context.Background(), api.User{ID: u}, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				go s.Run(ctx, discardSink{})
				t.Cleanup(cancel)
				if u == "ghost-2" {
					eventually(t, "ghost-2 online", func() bool {
						on, err := f.store.Online(context.Background(), time.Now(), []string{u})
						return err == nil && len(on) == 1
					})
				}
			}
			w.expect(t, `presence {"user":"bob","online":true}`)
			w.mustNotHave(t, "ghost-1", `"user":"ghost-2"`)
		})
	}
}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Flush() error                { return nil }
func (discardSink) Abort()                      {}
