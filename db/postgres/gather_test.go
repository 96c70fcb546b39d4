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

// notifying is a store on a database of its own, whose watchHead wakes no
// one, with a connection that listens to its notifications of changes as
// another instance's listener does (so that the store notifies it).
type notifying struct {
	w     *postgres.Store
	heads chan int64 // the positions the store's own handlers are woken for
	conn  *pgx.Conn
}

func newNotifying(t *testing.T) *notifying {
	url := pgtest.NewDatabase(t)
	postgres.SetHeadCheck(t, time.Hour)
	n := &notifying{w: open(t, url), heads: make(chan int64, 16)}
	ctx := t.Context()
	n.w.Settle(ctx)
	t.Cleanup(n.w.Bus().SubscribeWake(api.TopicChanges, func(head int64) { n.heads <- head }))
	conn := listenAsInstance(t, url)
	n.conn = conn
	for len(n.heads) > 0 { // wake-ups of the subscription's start
		<-n.heads
	}
	return n
}

// listenAsInstance returns a connection that listens to the
// notifications of changes as another instance's listener: named as one,
// and counted as begun once it listens (Store.began), so that the stores
// notify it rather than count on a feed.
func listenAsInstance(t *testing.T, url string) *pgx.Conn {
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = postgres.ListenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `LISTEN "switchboard.changes"`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE log_head SET listeners = listeners + 1`); err != nil {
		t.Fatal(err)
	}
	return conn
}

// receive returns the next notification's payload, or an error after within.
func (n *notifying) receive(t *testing.T, within time.Duration) (string, error) {
	wait, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	note, err := n.conn.WaitForNotification(wait)
	if err != nil {
		return "", err
	}
	return note.Payload, nil
}

// receiveAll returns the payloads of the next k notifications; it fails
// the test if one does not come within 5 s.
func (n *notifying) receiveAll(t *testing.T, k int) []string {
	var notes []string
	for range k {
		note, err := n.receive(t, 5*time.Second)
		if err != nil {
			t.Fatalf("notifications %q, then %v", notes, err)
		}
		notes = append(notes, note)
	}
	return notes
}

// write writes on its own goroutine and sends its outcome to answered.
func (n *notifying) write(t *testing.T, w api.Write, answered chan<- error) {
	go func() { _, err := n.w.Write(t.Context(), []api.Write{w}); answered <- err }()
}

// waitWaiting returns once a write waits for the store's next group.
func (n *notifying) waitWaiting() {
	for n.w.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
}

// A group whose successor already waits, as large as it, leaves its
// notification to it: the two go in one transaction, in order, which
// every listening instance takes at the cost of one. Held between commit
// and flush, the successor holds back both notifications; the first
// group's writer has its answer all the same, and the writing instance's
// own handlers are woken for it at once.
func TestNotificationsOfGroupsInARowGoTogether(t *testing.T) {
	n := newNotifying(t)
	var mu sync.Mutex
	flushes := 0
	committed := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	released := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	n.w.SetBeforeFlush(func() {
		mu.Lock()
		i := flushes
		flushes++
		mu.Unlock()
		if i < 2 {
			close(committed[i])
			<-released[i]
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
	answered := make(chan error, 2)
	n.write(t, set("a", `1`), answered)
	<-committed[0]
	n.write(t, set("b", `1`), answered)
	n.waitWaiting()
	close(released[0])
	<-committed[1]
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if note, err := n.receive(t, 300*time.Millisecond); err == nil {
		t.Fatalf("the first group was announced while the next one waited for its flush: %q", note)
	}
	var woken []int64
	for len(n.heads) > 0 {
		woken = append(woken, <-n.heads)
	}
	if !slices.Contains(woken, 1) {
		t.Fatalf("the writer's handlers were woken for %v, want 1 (the first group)", woken)
	}
	close(released[1])
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if notes := n.receiveAll(t, 2); !strings.HasPrefix(notes[0], "=1 ") || !strings.HasPrefix(notes[1], "=2 ") {
		t.Fatalf("notifications %q: want the first group's, then the second's", notes)
	}
}

// A notification left to the next group is sent after it even when that
// group commits nothing (its writes failed).
func TestNotificationLeftToAGroupThatFails(t *testing.T) {
	n := newNotifying(t)
	var once sync.Once
	committed, released := make(chan struct{}), make(chan struct{})
	n.w.SetBeforeFlush(func() {
		once.Do(func() {
			close(committed)
			<-released
		})
	})
	answered := make(chan error, 2)
	n.write(t, set("a", `1`), answered)
	<-committed
	failing := set("b", `1`)
	failing.IfMatch = 7 // b does not exist
	n.write(t, failing, answered)
	n.waitWaiting()
	close(released)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err == nil {
		t.Fatal("the conditional write succeeded")
	}
	if notes := n.receiveAll(t, 1); !strings.HasPrefix(notes[0], "=1 ") {
		t.Fatalf("notification %q; want the first group's", notes)
	}
}

// With an interval (NOTIFY_INTERVAL), a notification transaction starts
// no sooner than that after the one before: the first group's goes at
// once; those of the groups committed within the interval wait, and a
// timer sends them together, in order, though no group follows. The
// writer's own handlers are woken for each group at once.
func TestNotificationsWithinTheIntervalWait(t *testing.T) {
	const interval = time.Second
	n := newNotifying(t)
	n.w.SetNotifyInterval(interval)
	for i, name := range []string{"a", "b", "c"} {
		if _, err := n.w.Write(t.Context(), []api.Write{set(name, `1`)}); err != nil {
			t.Fatal(err)
		}
		if head := <-n.heads; head != int64(i+1) {
			t.Fatalf("the writer's handlers were woken for %d after write %d", head, i+1)
		}
		if i == 0 {
			if notes := n.receiveAll(t, 1); !strings.HasPrefix(notes[0], "=1 ") {
				t.Fatalf("first notification %q", notes)
			}
		}
	}
	if note, err := n.receive(t, interval/4); err == nil {
		t.Fatalf("notification %q within the interval", note)
	}
	if notes := n.receiveAll(t, 2); !strings.HasPrefix(notes[0], "=2 ") || !strings.HasPrefix(notes[1], "=3 ") {
		t.Fatalf("notifications %q: want the second group's, then the third's", notes)
	}
	// Counted once the sending transaction is answered, which may come
	// after its notifications.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		groups, transactions := n.w.Notifications()
		if groups == 3 && transactions == 2 {
			break
		}
		if groups > 3 || transactions > 2 || time.Now().After(deadline) {
			t.Fatalf("Notifications() = %d groups in %d transactions, want 3 in 2", groups, transactions)
		}
	}
}
