package realtime_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// sseFrame is one frame as a client reads it.
type sseFrame struct {
	id, event, data string
}

// conn is one connection of a stream, closed by the client at will.
type conn struct {
	frames <-chan sseFrame
	close  func()
}

// connectWith opens (or resumes, with token) a stream and serves it with
// one of the two writers; the frames come with their id lines.
func connectWith(t *testing.T, hub *realtime.Hub, writer string, user api.User, subs []api.Subscription, token string) (conn, error) {
	t.Helper()
	s, err := hub.Open(context.Background(), user, subs, token)
	if err != nil {
		return conn{}, err
	}
	var r io.ReadCloser
	var stop func()
	if writer == "goroutine" {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { pw.CloseWithError(s.Run(ctx, &pipeSink{w: pw})) }()
		r, stop = pr, cancel
	} else {
		// A loopback TCP connection, not net.Pipe: the writer pool writes
		// what the socket takes at once, and net.Pipe takes nothing until
		// the reader reads.
		server, client := tcpPair(t)
		go func() {
			if err := s.Detach(context.Background(), server); err != nil {
				server.Close()
			}
		}()
		r, stop = client, func() {}
	}
	out := make(chan sseFrame, 64)
	done := make(chan struct{})
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
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
				select {
				case out <- f:
				case <-done:
					return
				}
				f = sseFrame{}
			case line == "":
				f = sseFrame{}
			}
		}
	}()
	var once sync.Once
	c := conn{frames: out, close: func() {
		once.Do(func() {
			close(done)
			stop()
			r.Close()
		})
	}}
	t.Cleanup(c.close)
	return c, nil
}

// view is a client's copy of a collection, built from frames alone. It
// fails the test on a gap (a change whose version is not the next one of
// its record), a duplicate or a step back.
type view struct {
	t       *testing.T
	prefix  string
	stream  string
	lastID  string
	records map[string]json.RawMessage
	known   map[string]int64 // record -> last version the client knows of (a delete too)
	round   map[string]bool  // snapshots since the start of the current snapshot
	syncs   int
}

func newView(t *testing.T, prefix string) *view {
	return &view{t: t, prefix: prefix, records: map[string]json.RawMessage{}, known: map[string]int64{}}
}

type frameData struct {
	Stream  string          `json:"stream"`
	Name    string          `json:"name"`
	Version int64           `json:"version"`
	Data    json.RawMessage `json:"data"`
	Record  string          `json:"record"`
	Count   int             `json:"count"`
	Code    string          `json:"code"`
}

func (v *view) apply(f sseFrame) {
	t := v.t
	t.Helper()
	var d frameData
	if err := json.Unmarshal([]byte(f.data), &d); err != nil {
		t.Fatalf("frame %s %s: %v", f.event, f.data, err)
	}
	switch f.event {
	case "ready":
		if d.Stream != v.stream { // a new stream: it starts over
			v.stream = ""
			v.reset()
			v.stream = d.Stream
		}
	case "reset":
		v.reset()
	case "snapshot":
		if v.round == nil {
			v.round = map[string]bool{}
		}
		if !strings.HasPrefix(d.Name, v.prefix) || v.round[d.Name] {
			t.Fatalf("snapshot of %q twice or outside %q", d.Name, v.prefix)
		}
		if _, exists := v.records[d.Name]; exists && d.Version < v.known[d.Name] {
			t.Fatalf("snapshot of %s at version %d, the client knew version %d", d.Name, d.Version, v.known[d.Name])
		}
		v.round[d.Name] = true
		v.records[d.Name], v.known[d.Name] = d.Data, d.Version
	case "synced":
		if d.Count != len(v.round) {
			t.Fatalf("synced says %d records, %d snapshots came", d.Count, len(v.round))
		}
		// The snapshot is the whole collection: what it does not hold is gone.
		for name := range v.records {
			if !v.round[name] {
				delete(v.records, name)
				delete(v.known, name)
			}
		}
		v.round = nil
		v.syncs++
	case "record", "delete":
		if v.round != nil {
			t.Fatalf("%s frame inside a snapshot: %s", f.event, f.data)
		}
		if !strings.HasPrefix(d.Name, v.prefix) {
			t.Fatalf("change of %q outside %q", d.Name, v.prefix)
		}
		_, exists := v.records[d.Name]
		if last, ok := v.known[d.Name]; ok && d.Version != last+1 && (exists || d.Version != 1) {
			// (A record created again may start over at version 1.)
			t.Fatalf("%s %s at version %d after version %d: a gap or a duplicate", f.event, d.Name, d.Version, last)
		}
		v.known[d.Name] = d.Version
		if f.event == "delete" {
			if !exists {
				t.Fatalf("delete of %s, which the client does not have", d.Name)
			}
			delete(v.records, d.Name)
		} else {
			v.records[d.Name] = d.Data
		}
	case "denied":
		t.Fatalf("denied: %s", f.data)
	}
	if f.id != "" {
		v.lastID = f.id
	}
}

func (v *view) reset() {
	clear(v.records)
	clear(v.known)
	v.round = nil
}

// equals reports whether the view is the store's collection now.
func (v *view) equals(ctx context.Context, store api.Store) (bool, string) {
	var all []api.Record
	for after := ""; ; {
		_, page, err := store.ListData(ctx, v.prefix, after, 500)
		if err != nil {
			return false, err.Error()
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Name
	}
	if len(all) != len(v.records) {
		extra := []string{}
		in := map[string]bool{}
		for _, r := range all {
			in[r.Name] = true
		}
		for name := range v.records {
			if !in[name] && len(extra) < 5 {
				extra = append(extra, fmt.Sprintf("%s@%d", name, v.known[name]))
			}
		}
		return false, fmt.Sprintf("the store has %d records, the client %d (extra: %v)", len(all), len(v.records), extra)
	}
	for _, r := range all {
		if got, ok := v.records[r.Name]; !ok || string(got) != string(r.Data) {
			return false, fmt.Sprintf("%s: store %s, client %s", r.Name, r.Data, got)
		}
	}
	return true, ""
}

// churn runs n writers that create, change and delete records under
// "c/" and outside it until ctx ends.
func churn(ctx context.Context, store api.Store, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ctx.Err() == nil; i++ {
				prefix := "c/"
				if rng.IntN(4) == 0 {
					prefix = "o/"
				}
				name := fmt.Sprintf("%s%03d/%d", prefix, rng.IntN(200), rng.IntN(3)) // several pages
				data := json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				write := api.Write{Kind: api.KindSet, Name: name, Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return data, nil }}
				switch rng.IntN(5) {
				case 0:
					write = api.Write{Kind: api.KindDelete, Name: name}
				case 1:
					write.Kind = api.KindPatch
				}
				store.Write(ctx, []api.Write{write}) // a delete of a missing record fails: fine
				if i%8 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	return &wg
}

func collectionConfig() realtime.HubConfig {
	return realtime.HubConfig{Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 4 << 20, MaxCollection: 10000}
}

// drainUntilEqual reads frames until the view equals the store, which
// writes no more.
func drainUntilEqual(t *testing.T, v *view, c conn, store api.Store) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if ok, _ := v.equals(context.Background(), store); ok && v.round == nil && v.syncs > 0 {
			select {
			case f, ok := <-c.frames:
				if !ok {
					t.Fatal("stream closed")
				}
				v.apply(f)
				continue
			case <-time.After(100 * time.Millisecond):
				if ok, _ := v.equals(context.Background(), store); ok {
					return
				}
				continue
			}
		}
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("stream closed")
			}
			v.apply(f)
		case <-deadline:
			_, why := v.equals(context.Background(), store)
			t.Fatalf("the client's view never equals the store: %s (last id %s)", why, v.lastID)
		}
	}
}

// TestCollectionUnderLoad: a collection opened while 8 writers create,
// change and delete records under its prefix and outside: snapshots,
// synced, then every change, no gap, no duplicate; the client's view,
// built from frames alone, equals the store at the end.
func TestCollectionUnderLoad(t *testing.T) {
	for writer := range writers {
		t.Run(writer, func(t *testing.T) {
			f := newFixture(t, collectionConfig())
			ctx, stop := context.WithCancel(context.Background())
			wg := churn(ctx, f.store, 8)
			time.Sleep(50 * time.Millisecond) // some records exist
			c, err := connectWith(t, f.hub, writer, api.User{}, []api.Subscription{{Record: "c/*"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			v := newView(t, "c/")
			for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
				select {
				case fr, ok := <-c.frames:
					if !ok {
						t.Fatal("stream closed")
					}
					v.apply(fr)
					if fr.event == "snapshot" {
						// A slow reader: the pages of the snapshot are
						// read far apart, with changes in between.
						time.Sleep(200 * time.Microsecond)
					}
				case <-time.After(time.Second):
					t.Fatal("no frame for a second")
				}
			}
			stop()
			wg.Wait()
			drainUntilEqual(t, v, c, f.store)
			if v.syncs != 1 {
				t.Fatalf("%d synced frames, want 1", v.syncs)
			}
		})
	}
}

// TestCollectionResumes: 100 reconnects with Last-Event-ID under the same
// load; each connection reads a few frames and goes. No gap, no
// duplicate, and the view equals the store at the end.
func TestCollectionResumes(t *testing.T) {
	for writer := range writers {
		t.Run(writer, func(t *testing.T) {
			f := newFixture(t, collectionConfig())
			ctx, stop := context.WithCancel(context.Background())
			wg := churn(ctx, f.store, 8)
			defer func() { stop(); wg.Wait() }()
			user := api.User{ID: "u"}
			v := newView(t, "c/")
			rng := rand.New(rand.NewPCG(7, 7))
			var c conn
			for i := range 100 {
				var err error
				c, err = connectWith(t, f.hub, writer, user, []api.Subscription{{Record: "c/*"}}, v.lastID)
				if err != nil {
					t.Fatal(err)
				}
				if i == 99 {
					break
				}
				for n := rng.IntN(60); n >= 0; n-- {
					fr, ok := <-c.frames
					if !ok {
						break
					}
					v.apply(fr)
				}
				c.close()
			}
			stop()
			wg.Wait()
			drainUntilEqual(t, v, c, f.store)
		})
	}
}

// TestCollectionAdded: a collection added to an open stream gets its
// snapshots and synced, then its changes, records created later
// included (op "set").
func TestCollectionAdded(t *testing.T) {
	for writer := range writers {
		t.Run(writer, func(t *testing.T) {
			f := newFixture(t, collectionConfig())
			ctx := context.Background()
			user := api.User{ID: "u"}
			for i := range 3 {
				putRaw(t, f.store, fmt.Sprintf("c/%d", i), json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			}
			putRaw(t, f.store, "other", json.RawMessage(`1`))
			c, err := connectWith(t, f.hub, writer, user, []api.Subscription{{Event: "e"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			ready := <-c.frames
			var rd frameData
			json.Unmarshal([]byte(ready.data), &rd)
			if err := f.hub.ChangeSubscription(ctx, user, rd.Stream, api.Subscription{Record: "c/*"}, true); err != nil {
				t.Fatal(err)
			}
			want := []string{
				`snapshot {"name":"c/0","version":1,"data":{"n":0}}`,
				`snapshot {"name":"c/1","version":1,"data":{"n":1}}`,
				`snapshot {"name":"c/2","version":1,"data":{"n":2}}`,
				`synced {"record":"c/*","count":3}`,
			}
			for _, w := range want {
				fr := nextFrame(t, c)
				if got := fr.event + " " + fr.data; got != w {
					t.Fatalf("got %q, want %q", got, w)
				}
			}
			putRaw(t, f.store, "other", json.RawMessage(`2`))
			putRaw(t, f.store, "c/new", json.RawMessage(`"x"`))
			fr := nextFrame(t, c)
			if got := fr.event + " " + fr.data; got != `record {"name":"c/new","version":1,"data":"x","op":"set"}` || fr.id == "" {
				t.Fatalf("got %q (id %q)", got, fr.id)
			}
			info, err := f.store.GetStream(ctx, rd.Stream)
			if err != nil || len(info.Subs) != 2 || info.Subs[1].Record != "c/*" {
				t.Fatalf("stored stream %+v, %v", info, err)
			}
		})
	}
}

func nextFrame(t *testing.T, c conn) sseFrame {
	t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			t.Fatal("stream closed")
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame in 5s")
	}
	return sseFrame{}
}

// TestCollectionLimit: a new stream whose collection is over
// MAX_COLLECTION_RECORDS is refused with PAYLOAD_TOO_LARGE before
// anything is sent; added to an open stream, it gets a denied frame and
// no snapshot, and the stream goes on without it.
func TestCollectionLimit(t *testing.T) {
	for writer := range writers {
		t.Run(writer, func(t *testing.T) {
			cfg := collectionConfig()
			cfg.MaxCollection = 5
			f := newFixture(t, cfg)
			ctx := context.Background()
			user := api.User{ID: "u"}
			for i := range 6 {
				putRaw(t, f.store, fmt.Sprintf("big/%d", i), json.RawMessage(`1`))
			}
			for i := range 5 {
				putRaw(t, f.store, fmt.Sprintf("small/%d", i), json.RawMessage(`1`))
			}
			_, err := f.hub.Open(ctx, user, []api.Subscription{{Record: "small/*"}, {Record: "big/*"}}, "")
			if api.ErrorCode(err) != api.CodePayloadTooLarge {
				t.Fatalf("open with 6 records over a limit of 5: %v, want PAYLOAD_TOO_LARGE", err)
			}
			c, err := connectWith(t, f.hub, writer, user, []api.Subscription{{Record: "small/*"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			v := newView(t, "small/")
			for v.syncs == 0 {
				v.apply(nextFrame(t, c))
			}
			if err := f.hub.ChangeSubscription(ctx, user, v.stream, api.Subscription{Record: "big/*"}, true); err != nil {
				t.Fatal(err)
			}
			fr := nextFrame(t, c)
			if got := fr.event + " " + fr.data; got != `denied {"subscription":{"record":"big/*"},"code":"PAYLOAD_TOO_LARGE"}` {
				t.Fatalf("got %q, want the denied frame first", got)
			}
			putRaw(t, f.store, "big/0", json.RawMessage(`2`))
			putRaw(t, f.store, "small/0", json.RawMessage(`2`))
			if fr := nextFrame(t, c); !strings.Contains(fr.data, `"small/0"`) {
				t.Fatalf("got %s %s, want the change of small/0 only", fr.event, fr.data)
			}
			info, err := f.store.GetStream(ctx, v.stream)
			if err != nil || len(info.Subs) != 1 {
				t.Fatalf("stored stream %+v, %v: want the collection dropped", info, err)
			}
		})
	}
}

// TestCollectionBadInput: malformed collections and wildcards are
// INVALID_NAME (a path with a collection, INVALID_PATH).
func TestCollectionBadInput(t *testing.T) {
	bad := []api.Subscription{
		{Record: "*x"}, {Record: "a/*/b"}, {Record: "/*"}, {Record: "a/**"}, {Record: "**"},
		{Event: "**"}, {Event: "*x"}, {Listen: "*"},
	}
	for _, x := range bad {
		if err := realtime.ValidateSubscription(x); api.ErrorCode(err) != api.CodeInvalidName {
			t.Errorf("%+v: %v, want INVALID_NAME", x, err)
		}
	}
	if err := realtime.ValidateSubscription(api.Subscription{Record: "a/*", Path: "x"}); api.ErrorCode(err) != api.CodeInvalidPath {
		t.Errorf("a path with a collection: %v, want INVALID_PATH", err)
	}
	for _, x := range []api.Subscription{{Record: "*"}, {Record: "a/*"}, {Event: "*"}, {Event: "a/b/*"}} {
		if err := realtime.ValidateSubscription(x); err != nil {
			t.Errorf("%+v: %v", x, err)
		}
	}
}

// TestEveryEventAndRecord: event=* carries every event, record=* every
// record, and a change reaches a stream once however many of its
// subscriptions match it.
func TestEveryEventAndRecord(t *testing.T) {
	f := newFixture(t, collectionConfig())
	ctx := context.Background()
	c, err := connectWith(t, f.hub, "pool", api.User{}, []api.Subscription{{Event: "*"}, {Event: "a/*"}, {Record: "*"}, {Record: "a/*"}, {Record: "a/b"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"ready", "snapshot", "synced", "synced"} {
		if fr := nextFrame(t, c); fr.event != w {
			t.Fatalf("got %s %s, want %s", fr.event, fr.data, w)
		}
	}
	if _, err := f.events.Publish(ctx, api.User{}, "a/x", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.events.Publish(ctx, api.User{}, "top", []byte(`2`)); err != nil {
		t.Fatal(err)
	}
	putRaw(t, f.store, "a/b", json.RawMessage(`3`))
	putRaw(t, f.store, "z", json.RawMessage(`4`))
	for _, w := range []string{`"a/x"`, `"top"`, `"a/b"`, `"z"`} {
		if fr := nextFrame(t, c); !strings.Contains(fr.data, w) {
			t.Fatalf("got %s %s, want a frame of %s", fr.event, fr.data, w)
		}
	}
	select {
	case fr := <-c.frames:
		t.Fatalf("extra frame %s %s", fr.event, fr.data)
	case <-time.After(100 * time.Millisecond):
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return server, client
}

// noSecrets is an Access that refuses to read any name containing
// "secret", and allows everything else.
type noSecrets struct{}

func (noSecrets) Allow(_ context.Context, r realtime.Request) error {
	if r.Action == realtime.ActRead && strings.Contains(r.Name, "secret") {
		return api.Errorf(api.CodePermissionDenied, "no")
	}
	return nil
}

func (noSecrets) DependsOnData(realtime.Section, realtime.Action, string) bool { return false }

// newFixtureWith is newFixture with an Access of its own.
func newFixtureWith(t *testing.T, cfg realtime.HubConfig, access realtime.Access) *fixture {
	f := newFixture(t, collectionConfig()) // for its store; its hub idles
	hub := realtime.NewHub(f.store, f.store.Bus(), access, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	f.hub = hub
	return f
}

// TestCollectionHidesUnreadable: with an Access that refuses to read some
// names, a collection's snapshot holds neither their data nor their
// names, over several pages, synced counts only what was sent, and no
// later change of theirs (a write, a create, a delete) reaches the stream,
// whether the collection came with the stream or was added to it.
func TestCollectionHidesUnreadable(t *testing.T) {
	for writer := range writers {
		t.Run(writer, func(t *testing.T) {
			f := newFixtureWith(t, collectionConfig(), noSecrets{})
			ctx := context.Background()
			user := api.User{ID: "u"}
			var want []string // the snapshot's names, in order
			for i := range 700 {
				name := fmt.Sprintf("c/%04d", i)
				if i%3 == 1 {
					name += "-secret"
				} else {
					want = append(want, name)
				}
				putRaw(t, f.store, name, json.RawMessage(fmt.Sprintf(`{"i":%d,"tag":"plain"}`, i)))
			}
			putRaw(t, f.store, "c/zz-secret", json.RawMessage(`{"tag":"secret"}`))
			check := func(c conn, record string) {
				t.Helper()
				for i, name := range want {
					fr := nextFrame(t, c)
					var d frameData
					json.Unmarshal([]byte(fr.data), &d)
					if fr.event != "snapshot" || d.Name != name {
						t.Fatalf("%s: frame %d: %s %.80s, want the snapshot of %s", record, i, fr.event, fr.data, name)
					}
				}
				fr := nextFrame(t, c)
				if got, w := fr.event+" "+fr.data, fmt.Sprintf(`synced {"record":%q,"count":%d}`, record, len(want)); got != w {
					t.Fatalf("got %q, want %q", got, w)
				}
			}
			c, err := connectWith(t, f.hub, writer, user, []api.Subscription{{Record: "c/*"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			ready := nextFrame(t, c)
			var rd frameData
			json.Unmarshal([]byte(ready.data), &rd)
			check(c, "c/*")
			if err := f.hub.ChangeSubscription(ctx, user, rd.Stream, api.Subscription{Record: "*"}, true); err != nil {
				t.Fatal(err)
			}
			check(c, "*")

			putRaw(t, f.store, "c/0001-secret", json.RawMessage(`{"tag":"secret"}`)) // a write
			putRaw(t, f.store, "c/new-secret", json.RawMessage(`{"tag":"secret"}`))  // a create
			if _, err := f.store.Write(ctx, []api.Write{{Kind: api.KindDelete, Name: "c/zz-secret"}}); err != nil {
				t.Fatal(err)
			}
			putRaw(t, f.store, "c/0000", json.RawMessage(`{"tag":"last"}`))
			fr := nextFrame(t, c)
			if got := fr.event + " " + fr.data; got != `record {"name":"c/0000","version":2,"data":{"tag":"last"},"op":"set"}` {
				t.Fatalf("got %q, want only the change of c/0000", got)
			}
			select {
			case fr := <-c.frames:
				t.Fatalf("extra frame %s %s", fr.event, fr.data)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}
