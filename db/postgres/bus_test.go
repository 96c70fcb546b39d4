package postgres_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// received is what a subscription got, one payload at a time.
type received chan []byte

// subscribe subscribes to topic and waits for the first nil, which says
// that the subscription is live.
func subscribe(t *testing.T, b api.Bus, topic string) received {
	t.Helper()
	got := make(received, 1000)
	cancel := b.Subscribe(topic, func(p []byte) { got <- p })
	t.Cleanup(cancel)
	if p := got.next(t); p != nil {
		t.Fatalf("the first call of a new subscription has %q, want nil", p)
	}
	return got
}

func (r received) next(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-r:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no call of the handler within 10s")
		return nil
	}
}

// until skips calls until one has want (a nil want waits for a nil).
func (r received) until(t *testing.T, want []byte) {
	t.Helper()
	for {
		p := r.next(t)
		if (want == nil) == (p == nil) && bytes.Equal(p, want) {
			return
		}
	}
}

// Payloads cross instances as they were sent: nil stays a wake-up, empty
// stays empty, binary and text payloads up to the limit arrive intact,
// in order.
func TestBusAcrossInstances(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	onB := subscribe(t, b.Bus(), "streams")
	onA := subscribe(t, a.Bus(), "streams")

	big := []byte(strings.Repeat("x", postgres.MaxPayload))
	binary := bytes.Repeat([]byte{0, 0xff, 'a'}, 1000)
	payloads := [][]byte{[]byte(`{"stream":"s1"}`), nil, {}, big, binary, []byte("é\u2028")}
	for _, p := range payloads {
		if err := a.Bus().Send(t.Context(), "streams", p); err != nil {
			t.Fatalf("Send(%d bytes): %v", len(p), err)
		}
	}
	for name, got := range map[string]received{"A": onA, "B": onB} {
		for i, want := range payloads {
			p := got.next(t)
			if (p == nil) != (want == nil) || !bytes.Equal(p, want) {
				t.Errorf("instance %s, payload %d: got %d bytes (nil %v), want %d bytes (nil %v)",
					name, i, len(p), p == nil, len(want), want == nil)
			}
		}
	}
}

// Send refuses what NOTIFY cannot carry, with an error, and sends nothing.
func TestBusPayloadTooLarge(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	got := subscribe(t, s.Bus(), "big")
	for _, p := range [][]byte{
		[]byte(strings.Repeat("x", 7000)),
		[]byte(strings.Repeat("x", 8000)),
		bytes.Repeat([]byte{0xff}, 6500), // under the limit, but base64 is over NOTIFY's
	} {
		if err := s.Bus().Send(t.Context(), "big", p); err == nil {
			t.Errorf("Send of %d bytes succeeded, want an error", len(p))
		}
	}
	if err := s.Bus().Send(t.Context(), "big", []byte("after")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if p := got.next(t); string(p) != "after" {
		t.Errorf("the first payload received is %d bytes, want the one sent after the refused ones", len(p))
	}
}

// A write on one instance wakes the change subscribers of every instance,
// with the new head as payload.
func TestWriteNotifies(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	onB := subscribe(t, b.Bus(), api.TopicChanges)
	cs, err := a.Write(t.Context(), []api.Write{set("doc", `1`), set("other", `2`)})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	onB.until(t, []byte(itoa(cs[1].Seq)))
}

// When the listener's connection is cut, Ready fails until it is back, the
// handlers are called with nil (they may have missed notifications), and
// notifications flow again.
func TestListenerReconnects(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s, other := open(t, url), open(t, url)
	got := subscribe(t, s.Bus(), api.TopicChanges)
	if err := s.Bus().Ready(t.Context()); err != nil {
		t.Fatalf("Ready before the cut: %v", err)
	}

	terminateListeners(t, url, 2) // both instances' listeners
	waitReady(t, s.Bus(), false)
	waitReady(t, s.Bus(), true)
	got.until(t, nil)

	cs, err := other.Write(t.Context(), []api.Write{set("doc", `1`)})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	got.until(t, []byte(itoa(cs[0].Seq)))
}

// terminateListeners cuts the listener connections on the database at url
// and checks that there were want of them.
func terminateListeners(t *testing.T, url string, want int) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(t.Context(), `
		SELECT count(*) FROM (
			SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()) t`,
		postgres.ListenerName).Scan(&n)
	if err != nil {
		t.Fatalf("terminate listeners: %v", err)
	}
	if n != want {
		t.Fatalf("terminated %d listener connections, want %d", n, want)
	}
}

// waitReady polls Ready until it reports ready (or, for false, not ready).
func waitReady(t *testing.T, b api.Bus, ready bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.Ready(t.Context())
		if (err == nil) == ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready = %v after 10s, want ready %v", err, ready)
		}
		time.Sleep(time.Millisecond)
	}
}

// While the listener is connected, a subscription is live when Subscribe
// returns: a payload sent right after it arrives.
func TestSubscribeIsLiveOnReturn(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	waitReady(t, b.Bus(), true)
	for i := range 5 {
		topic := "live-" + itoa(int64(i))
		got := make(received, 10)
		t.Cleanup(b.Bus().Subscribe(topic, func(p []byte) { got <- p }))
		if err := a.Bus().Send(t.Context(), topic, []byte("hello")); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got.until(t, []byte("hello"))
	}
}
