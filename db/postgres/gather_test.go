package postgres_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// A group whose successor already waits, as large as it, leaves its
// notification to it: the two go in one transaction, in order, which
// every listening instance takes at the cost of one. Held between commit
// and flush, the successor holds back both notifications; the first
// group's writer has its answer all the same, and the writing instance's
// own handlers are woken for it at once.
func TestNotificationsOfGroupsInARowGoTogether(t *testing.T) {
	url := pgtest.NewDatabase(t)
	postgres.SetHeadCheck(t, time.Hour) // watchHead wakes no one
	w := open(t, url)
	ctx := t.Context()
	w.Settle(ctx)
	heads := make(chan int64, 16)
	t.Cleanup(w.Bus().SubscribeWake(api.TopicChanges, func(head int64) { heads <- head }))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN "switchboard.changes"`); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	flushes := 0
	committed := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	released := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	w.SetBeforeFlush(func() {
		mu.Lock()
		n := flushes
		flushes++
		mu.Unlock()
		if n < 2 {
			close(committed[n])
			<-released[n]
		}
	})
	defer func() {
		for _, r := range released {
			select {
			case <-r:
			default:
				close(r)
			}
		}
	}()
	for len(heads) > 0 { // wake-ups of the subscription's start
		<-heads
	}
	answered := make(chan error, 2)
	go func() { _, err := w.Write(ctx, []api.Write{set("a", `1`)}); answered <- err }()
	<-committed[0]
	go func() { _, err := w.Write(ctx, []api.Write{set("b", `1`)}); answered <- err }()
	for w.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(released[0])
	<-committed[1]
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	n, err := conn.WaitForNotification(wait)
	cancel()
	if err == nil {
		t.Fatalf("the first group was announced while the next one waited for its flush: %q", n.Payload)
	}
	var woken []int64
	for len(heads) > 0 {
		woken = append(woken, <-heads)
	}
	if !slices.Contains(woken, 1) {
		t.Fatalf("the writer's handlers were woken for %v, want 1 (the first group)", woken)
	}
	close(released[1])
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	var notes []string
	for range 2 {
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := conn.WaitForNotification(wait)
		cancel()
		if err != nil {
			t.Fatalf("notifications %q, then %v", notes, err)
		}
		notes = append(notes, n.Payload)
	}
	if !strings.HasPrefix(notes[0], "=1 ") || !strings.HasPrefix(notes[1], "=2 ") {
		t.Fatalf("notifications %q: want the first group's, then the second's", notes)
	}
}

// With an interval (NOTIFY_INTERVAL), a notification transaction starts
// no sooner than that after the one before: the first group's goes at
// once; those of the groups committed within the interval wait, and a
// timer sends them together, in order, though no group follows. The
// writer's own handlers are woken for each group at once.
func TestNotificationsWithinTheIntervalWait(t *testing.T) {
	const interval = time.Second
	url := pgtest.NewDatabase(t)
	postgres.SetHeadCheck(t, time.Hour) // watchHead wakes no one
	w := open(t, url)
	w.SetNotifyInterval(interval)
	ctx := t.Context()
	w.Settle(ctx)
	heads := make(chan int64, 16)
	t.Cleanup(w.Bus().SubscribeWake(api.TopicChanges, func(head int64) { heads <- head }))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN "switchboard.changes"`); err != nil {
		t.Fatal(err)
	}
	for len(heads) > 0 { // wake-ups of the subscription's start
		<-heads
	}
	receive := func(within time.Duration) (string, error) {
		wait, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		n, err := conn.WaitForNotification(wait)
		if err != nil {
			return "", err
		}
		return n.Payload, nil
	}

	for i, name := range []string{"a", "b", "c"} {
		if _, err := w.Write(ctx, []api.Write{set(name, `1`)}); err != nil {
			t.Fatal(err)
		}
		if head := <-heads; head != int64(i+1) {
			t.Fatalf("the writer's handlers were woken for %d after write %d", head, i+1)
		}
		if i == 0 {
			first, err := receive(5 * time.Second)
			if err != nil || !strings.HasPrefix(first, "=1 ") {
				t.Fatalf("first notification %q, %v", first, err)
			}
		}
	}
	if n, err := receive(interval / 4); err == nil {
		t.Fatalf("notification %q within the interval", n)
	}
	var notes []string
	for range 2 {
		n, err := receive(5 * time.Second)
		if err != nil {
			t.Fatalf("notifications %q, then %v", notes, err)
		}
		notes = append(notes, n)
	}
	if !strings.HasPrefix(notes[0], "=2 ") || !strings.HasPrefix(notes[1], "=3 ") {
		t.Fatalf("notifications %q: want the second group's, then the third's", notes)
	}
}

// A notification left to the next group is sent after it even when that
// group commits nothing (its writes failed).
func TestNotificationLeftToAGroupThatFails(t *testing.T) {
	url := pgtest.NewDatabase(t)
	postgres.SetHeadCheck(t, time.Hour) // watchHead wakes no one
	w := open(t, url)
	ctx := t.Context()
	w.Settle(ctx)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN "switchboard.changes"`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	committed, released := make(chan struct{}), make(chan struct{})
	w.SetBeforeFlush(func() {
		once.Do(func() {
			close(committed)
			<-released
		})
	})
	answered := make(chan error, 2)
	go func() { _, err := w.Write(ctx, []api.Write{set("a", `1`)}); answered <- err }()
	<-committed
	failing := set("b", `1`)
	failing.IfMatch = 7 // b does not exist
	go func() { _, err := w.Write(ctx, []api.Write{failing}); answered <- err }()
	for w.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(released)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err == nil {
		t.Fatal("the conditional write succeeded")
	}
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := conn.WaitForNotification(wait)
	cancel()
	if err != nil || !strings.HasPrefix(n.Payload, "=1 ") {
		t.Fatalf("notification %v, %v; want the first group's", n, err)
	}
}
