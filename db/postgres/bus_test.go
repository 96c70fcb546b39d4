package postgres_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/dbtest"
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

// TestBusConformance runs the api.Bus conformance suite on a database of
// its own for every subtest, with two instances on it (two stores, each
// with its listener), both connected; Disconnect cuts both listeners.
func TestBusConformance(t *testing.T) {
	dbtest.RunBus(t, func(t *testing.T) dbtest.BusFixture {
		url := pgtest.NewDatabase(t)
		a, b := open(t, url), open(t, url)
		waitBusReady(t, a.Bus())
		waitBusReady(t, b.Bus())
		return dbtest.BusFixture{
			Bus:        a.Bus(),
			Peer:       b.Bus(),
			Disconnect: func(t *testing.T) { terminateListeners(t, url, 2) },
		}
	})
}

// Send refuses a binary payload under the limit that base64 puts over
// NOTIFY's, with PAYLOAD_TOO_LARGE, and sends nothing.
func TestBusPayloadTooLarge(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	got := subscribe(t, s.Bus(), "big")
	p := bytes.Repeat([]byte{0xff}, 6500)
	err := s.Bus().Send(t.Context(), "big", p)
	if err == nil {
		t.Errorf("Send of %d bytes succeeded, want an error", len(p))
	} else if code := api.ErrorCode(err); code != api.CodePayloadTooLarge {
		t.Errorf("Send of %d bytes: code %s (%v), want %s", len(p), code, err, api.CodePayloadTooLarge)
	}
	if err := s.Bus().Send(t.Context(), "big", []byte("after")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if p := got.next(t); string(p) != "after" {
		t.Errorf("the first payload received is %d bytes, want the one sent after the refused one", len(p))
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
