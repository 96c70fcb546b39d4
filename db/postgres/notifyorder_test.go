package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// commitSilently appends an event named name to the log as a writer does,
// and commits it without any notification: a writer that died between its
// commit and its notification. It returns the event's position and time.
func commitSilently(t *testing.T, url, name string) (int64, time.Time) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	size := api.Change{Name: name, Data: []byte(`"lost"`)}.Size()
	var seq int64
	var at time.Time
	err = conn.QueryRow(t.Context(), `
		WITH h AS (
			UPDATE log_head SET seq = seq + 1, bytes = bytes + $2, time = greatest(time, clock_timestamp())
			RETURNING seq, time
		)
		INSERT INTO log (seq, time, kind, name, version, data, publisher, size)
		SELECT seq, time, 'event', $1, 0, '"lost"'::json, '', $2 FROM h
		RETURNING seq, time`, name, size).Scan(&seq, &at)
	if err != nil {
		t.Fatalf("append to the log: %v", err)
	}
	return seq, at
}

// notifyRaw sends text on the changes topic's channel, as a writer's
// notification (notify.go).
func notifyRaw(t *testing.T, url, text string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `SELECT pg_notify('switchboard.changes', $1)`, text); err != nil {
		t.Fatalf("notify: %v", err)
	}
}

// eventNote is the text of a notification carrying one event of data
// "lost" at position seq.
func eventNote(seq int64, at time.Time, name string) string {
	return fmt.Sprintf("=%d 1 %d 1\nevent 0 %d 0 6\n%s\"lost\"", seq, at.UnixMicro(), len(name), name)
}

// names returns the names of changes, in order.
func names(cs []api.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// changesAfter fails t unless s.Changes(after) answers exactly the names.
func changesAfter(t *testing.T, s *postgres.Store, after int64, want ...string) {
	t.Helper()
	got, err := s.Changes(t.Context(), after, 100)
	if err != nil {
		t.Fatalf("Changes(%d): %v", after, err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint(want) {
		t.Fatalf("Changes(%d) = %v, want %v", after, names(got), want)
	}
}

// A commit whose notification never comes (its writer died in between)
// still reaches another instance: it reads the head when no notification
// came for a while, wakes its handlers, and reads the change from the log.
func TestLostNotificationReachesOthers(t *testing.T) {
	postgres.SetHeadCheck(t, 100*time.Millisecond)
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	onB := subscribe(t, b.Bus(), api.TopicChanges)
	cs, err := a.Write(t.Context(), []api.Write{event("first", `1`, "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	onB.until(t, []byte(itoa(cs[0].Seq)))
	changesAfter(t, b, cs[0].Seq-1, "first") // from the notification

	seq, _ := commitSilently(t, url, "lost")
	onB.until(t, []byte(itoa(seq))) // within 10 s, or it fails
	changesAfter(t, b, cs[0].Seq-1, "first", "lost")
	changesAfter(t, a, cs[0].Seq, "lost")
}

// Notifications that arrive out of the order of positions, one of them
// after a gap: a reader woken by the later position reads the gap from
// the log, and the late notification of the earlier position wakes no one
// and leaves every answer whole and in order.
func TestOutOfOrderNotifications(t *testing.T) {
	postgres.SetHeadCheck(t, time.Hour)
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	onB := subscribe(t, b.Bus(), api.TopicChanges)
	cs, err := a.Write(t.Context(), []api.Write{event("first", `1`, "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	onB.until(t, []byte(itoa(cs[0].Seq)))
	changesAfter(t, b, cs[0].Seq-1, "first")

	s1, t1 := commitSilently(t, url, "one")
	s2, t2 := commitSilently(t, url, "two")
	notifyRaw(t, url, eventNote(s2, t2, "two")) // the later first: a gap at s1
	onB.until(t, []byte(itoa(s2)))
	reads := b.Reads()
	changesAfter(t, b, cs[0].Seq, "one", "two")
	if b.Reads() == reads {
		t.Errorf("Changes across a gap answered without reading the log")
	}
	changesAfter(t, b, s1, "two")

	notifyRaw(t, url, eventNote(s1, t1, "one")) // late
	cs2, err := a.Write(t.Context(), []api.Write{event("three", `3`, "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	// The next wake is the next position: the late one woke no one.
	if p := onB.next(t); string(p) != itoa(cs2[0].Seq) {
		t.Fatalf("woken with %q after a late notification, want %q", p, itoa(cs2[0].Seq))
	}
	changesAfter(t, b, cs[0].Seq-1, "first", "one", "two", "three")
	changesAfter(t, b, s1, "two", "three")
	changesAfter(t, b, s2, "three")
}

// After the listener reconnects, an instance does not answer from the
// changes it kept: a commit announced while it was not listening (here:
// never announced) follows them, and a reader gets it.
func TestReconnectForgetsTheTail(t *testing.T) {
	postgres.SetHeadCheck(t, time.Hour)
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	a.Settle(t.Context())
	b.Settle(t.Context())
	onB := subscribe(t, b.Bus(), api.TopicChanges)
	cs, err := a.Write(t.Context(), []api.Write{event("first", `1`, ""), event("second", `2`, "")})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	onB.until(t, []byte(itoa(cs[1].Seq)))
	reads := b.Reads()
	changesAfter(t, b, cs[0].Seq, "second") // from the tail
	if b.Reads() != reads {
		t.Fatalf("Changes of notified changes read the log")
	}

	commitSilently(t, url, "missed")
	terminateListeners(t, url, 2)
	onB.until(t, nil) // the wake-up after the reconnect
	changesAfter(t, b, cs[0].Seq, "second", "missed")
	changesAfter(t, b, cs[1].Seq, "missed")
}

// Writes from several instances at once, each notified after its commit:
// every instance's handlers are woken up to the last position, and every
// instance reads the whole log in order, whatever order the
// notifications came in.
func TestNotificationsFromManyWriters(t *testing.T) {
	postgres.SetHeadCheck(t, time.Hour)
	url := pgtest.NewDatabase(t)
	stores := []*postgres.Store{open(t, url), open(t, url), open(t, url)}
	wakes := make([]received, len(stores))
	for i, s := range stores {
		wakes[i] = subscribe(t, s.Bus(), api.TopicChanges)
	}
	start, _, err := stores[0].Snapshot(t.Context(), nil)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	const writers, each = 6, 40
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			s := stores[w%len(stores)]
			for i := range each {
				if _, err := s.Write(context.Background(), []api.Write{event(fmt.Sprintf("w%d/%d", w, i), `1`, "")}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	last := start + writers*each
	for i, s := range stores {
		wakes[i].until(t, []byte(itoa(last)))
		var got []api.Change
		for after := start; ; {
			page, err := s.Changes(t.Context(), after, 50)
			if err != nil {
				t.Fatalf("Changes: %v", err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		if len(got) != writers*each {
			t.Fatalf("instance %d read %d changes, want %d", i, len(got), writers*each)
		}
		for j, c := range got {
			if c.Seq != start+int64(j)+1 {
				t.Fatalf("instance %d: change %d at position %d, want %d", i, j, c.Seq, start+int64(j)+1)
			}
		}
	}
}
