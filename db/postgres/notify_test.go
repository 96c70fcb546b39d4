package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

func event(name, data, publisher string) api.Write {
	w := api.Write{Kind: api.KindEvent, Name: name, Publisher: publisher}
	if data != "" {
		w.Data = json.RawMessage(data)
	}
	return w
}

// sameChanges fails t unless got and want are the same changes, field by
// field (times to the microsecond, as Postgres keeps them).
func sameChanges(t *testing.T, got, want []api.Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.Seq != w.Seq || !g.Time.Equal(w.Time) || g.Kind != w.Kind || g.Name != w.Name ||
			g.Version != w.Version || !bytes.Equal(g.Data, w.Data) || (g.Data == nil) != (w.Data == nil) || g.Publisher != w.Publisher {
			t.Errorf("change %d = %+v, want %+v", i, g, w)
		}
	}
}

// A group's notification carries its changes: once another instance has
// been woken by it, its Changes answers without reading the database, and
// with the very changes the writer was given (names with spaces and new
// lines, events with and without data, deletes). An answer that there is
// nothing more still reads the log.
func TestNotifiedChangesNeedNoRead(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	a.Settle(t.Context())
	b.Settle(t.Context()) // its count as a listener begun reads the database
	onB := subscribe(t, b.Bus(), api.TopicChanges)
	before, _, err := b.Snapshot(t.Context(), nil)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	cs, err := a.Write(t.Context(), []api.Write{
		set("doc one", `{"é":"x y\nz"}`),
		set("two\nlines", `[1, 2]`),
		{Kind: api.KindDelete, Name: "doc one"},
		event("news", `"hello"`, "user 1"),
		event("ping", "", ""),
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	onB.until(t, []byte(itoa(cs[len(cs)-1].Seq)))

	reads := b.Reads()
	got, err := b.Changes(t.Context(), before, 100)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	sameChanges(t, got, cs)
	got, err = b.Changes(t.Context(), cs[1].Seq, 2)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	sameChanges(t, got, cs[2:4])
	if n := b.Reads() - reads; n != 0 {
		t.Errorf("Changes of notified changes read the database %d times, want 0", n)
	}
	if got, err := b.Changes(t.Context(), cs[len(cs)-1].Seq, 100); err != nil || len(got) != 0 {
		t.Errorf("Changes after the head = %+v, %v; want none", got, err)
	}
	if n := b.Reads() - reads; n != 1 {
		t.Errorf("Changes after the head read the database %d times, want 1", n)
	}
}

// A group too large for one notification carries what fits; the rest is
// read from the log, and the changes come out whole and in order, on the
// writer's instance and on another.
func TestLargeGroupReadsTheRest(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	a.Settle(t.Context())
	b.Settle(t.Context()) // its count as a listener begun reads the database
	onB := subscribe(t, b.Bus(), api.TopicChanges)
	before, _, err := b.Snapshot(t.Context(), nil)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	big := `"` + strings.Repeat("x", 1500) + `"`
	var ws []api.Write
	for i := range 12 {
		ws = append(ws, set("big/"+itoa(int64(i)), big))
	}
	cs, err := a.Write(t.Context(), ws)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	onB.until(t, []byte(itoa(cs[len(cs)-1].Seq)))
	for name, s := range map[string]*postgres.Store{"writer": a, "other": b} {
		var got []api.Change
		for after := before; ; {
			page, err := s.Changes(t.Context(), after, 5)
			if err != nil {
				t.Fatalf("%s: Changes: %v", name, err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		sameChanges(t, got, cs)
	}
	if !slices.IsSortedFunc(cs, func(x, y api.Change) int { return int(x.Seq - y.Seq) }) {
		t.Errorf("positions out of order: %+v", cs)
	}
}

// SubscribeWake's handler is called with 0 once live, with the position a
// notification of changes announces (another instance's commit, or one
// announced late: not again), and with 0 after the listener reconnects.
func TestSubscribeWake(t *testing.T) {
	postgres.SetHeadCheck(t, time.Hour)
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	heads := make(chan int64, 100)
	cancel := b.Bus().SubscribeWake(api.TopicChanges, func(head int64) { heads <- head })
	t.Cleanup(cancel)
	next := func() int64 {
		t.Helper()
		select {
		case h := <-heads:
			return h
		case <-time.After(10 * time.Second):
			t.Fatal("no wake within 10s")
			return -1
		}
	}
	if h := next(); h != 0 {
		t.Fatalf("first wake with %d, want 0", h)
	}
	cs, err := a.Write(t.Context(), []api.Write{event("one", "", ""), event("two", `2`, "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if h := next(); h != cs[1].Seq {
		t.Fatalf("woken with %d, want %d", h, cs[1].Seq)
	}
	notifyRaw(t, url, "="+itoa(cs[0].Seq)) // late: announces nothing new
	cs2, err := a.Write(t.Context(), []api.Write{event("three", "", "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if h := next(); h != cs2[0].Seq {
		t.Fatalf("woken with %d after a late notification, want %d", h, cs2[0].Seq)
	}
	terminateListeners(t, url, 2)
	for h := next(); h != 0; h = next() {
	}
	if _, err := a.Write(t.Context(), []api.Write{event("four", "", "")}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if h := next(); h != cs2[0].Seq+1 {
		t.Fatalf("woken after the reconnect with %d, want %d", h, cs2[0].Seq+1)
	}
}

// The notifications of one transaction wake a handler once (or, should
// they come in more than one read, a few times), for the highest position,
// and every change they carried is answered without reading the log.
func TestBurstWakesOnce(t *testing.T) {
	postgres.SetHeadCheck(t, time.Hour)
	url := pgtest.NewDatabase(t)
	b := open(t, url)
	b.Settle(t.Context()) // its count as a listener begun wakes the handlers
	heads := make(chan int64, 100)
	t.Cleanup(b.Bus().SubscribeWake(api.TopicChanges, func(head int64) { heads <- head }))
	select {
	case <-heads: // live
	case <-time.After(10 * time.Second):
		t.Fatal("not live within 10s")
	}
	before, _, err := b.Snapshot(t.Context(), nil)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	const n = 50
	var notes []string
	var want []string
	for i := range int64(n) {
		seq := before + 1 + i
		notes = append(notes, eventNote(seq, time.UnixMicro(1_700_000_000_000_000), "e"+itoa(seq)))
		want = append(want, "e"+itoa(seq))
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `SELECT pg_notify('switchboard.changes', n) FROM unnest($1::text[]) AS n`, notes); err != nil {
		t.Fatalf("notify: %v", err)
	}
	wakes := 0
	for last := int64(0); last != before+n; wakes++ {
		select {
		case last = <-heads:
		case <-time.After(10 * time.Second):
			t.Fatalf("woken for %d after %d wakes, want %d", last, wakes, before+n)
		}
	}
	if wakes > 3 {
		t.Errorf("%d notifications of one transaction woke the handler %d times", n, wakes)
	}
	reads := b.Reads()
	changesAfter(t, b, before, want...)
	if b.Reads() != reads {
		t.Errorf("the changes of the burst were read from the log")
	}
}
