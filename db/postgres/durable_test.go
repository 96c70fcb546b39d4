package postgres_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// holdFlush makes the next write group of s stop between its commit and
// its WAL flush: committed is closed once it has committed, and it flushes
// when release is called (at the latest when t ends).
func holdFlush(t *testing.T, s *postgres.Store) (committed chan struct{}, release func()) {
	committed, released := make(chan struct{}), make(chan struct{})
	var hold, free sync.Once
	s.SetBeforeFlush(func() {
		hold.Do(func() {
			close(committed)
			<-released
		})
	})
	release = func() { free.Do(func() { close(released) }) }
	t.Cleanup(release)
	return committed, release
}

// A group's commit does not wait for its WAL flush (so log_head is let go
// before it), and what it wrote is then visible to SQL; but no read of
// another instance answers with it, nor with the record states it made,
// until it is durable: the reads wait for the writer's notification, sent
// after the flush.
func TestReadsWaitForTheFlush(t *testing.T) {
	url := pgtest.NewDatabase(t)
	// Only the notification lets them answer: their own flush would come
	// after 10 s.
	postgres.SetHeadCheck(t, time.Hour) // watchHead stays out of it
	postgres.SetFlushAfter(t, 10*time.Second)
	w, r := open(t, url), open(t, url)
	ctx := t.Context()
	r.Settle(ctx) // r hears w's notifications, and its first read of the head is done
	first, err := w.Write(ctx, []api.Write{set("a", `{"v":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := r.Get(ctx, "a"); err != nil || string(rec.Data) != `{"v":1}` {
		t.Fatalf("Get before = %+v, %v", rec, err)
	}

	committed, release := holdFlush(t, w)
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write(ctx, []api.Write{set("a", `{"v":2}`),
			set("b", `{"v":1}`)})
		wrote <- err
	}()
	<-committed
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var data string
	if err := conn.QueryRow(ctx, `SELECT data::text FROM records WHERE name = 'a'`).Scan(&data); err != nil || data != `{"v":2}` {
		t.Fatalf("the committed group is not visible to SQL: %q, %v", data, err)
	}

	head := first[0].Seq
	reads := map[string]func() (string, error){
		"Get": func() (string, error) {
			rec, err := r.Get(ctx, "a")
			return string(rec.Data), err
		},
		"List": func() (string, error) {
			recs, err := r.List(ctx, "", "", 10)
			return fmt.Sprint(recs), err
		},
		"ListData": func() (string, error) {
			pos, recs, err := r.ListData(ctx, "", "", 10)
			return fmt.Sprint(pos, recs), err
		},
		"Snapshot": func() (string, error) {
			pos, recs, err := r.Snapshot(ctx, []string{"a", "b"})
			return fmt.Sprint(pos, recs), err
		},
		"Changes": func() (string, error) {
			cs, err := r.Changes(ctx, head, 10)
			return fmt.Sprint(len(cs)), err
		},
	}
	type answer struct {
		read, got string
		err       error
	}
	answers := make(chan answer, len(reads))
	for name, read := range reads {
		go func() {
			got, err := read()
			answers <- answer{name, got, err}
		}()
	}
	select {
	case a := <-answers:
		t.Fatalf("%s answered before the flush: %s, %v", a.read, a.got, a.err)
	case err := <-wrote:
		t.Fatalf("the write was answered before its flush: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	released := time.Now()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Get":      `{"v":2}`,
		"List":     "[{a 2 []} {b 1 []}]",
		"ListData": fmt.Sprintf("%d [{a 2 [123 34 118 34 58 50 125]} {b 1 [123 34 118 34 58 49 125]}]", head+2),
		"Snapshot": fmt.Sprintf("%d [{a 2 [123 34 118 34 58 50 125]} {b 1 [123 34 118 34 58 49 125]}]", head+2),
		"Changes":  "2",
	}
	for range reads {
		a := <-answers
		if a.err != nil || a.got != want[a.read] {
			t.Errorf("%s after the flush = %s, %v; want %s", a.read, a.got, a.err, want[a.read])
		}
		if d := time.Since(released); d > 5*time.Second {
			t.Errorf("%s answered %v after the flush: not woken by the notification", a.read, d)
		}
	}
}

// A read that saw changes whose notification does not come (the writer
// died between its flush and its notification, or is slow to send it)
// waits for it, then flushes the WAL itself and answers; concurrent reads
// do so together.
func TestReadFlushesWhenNoNotificationComes(t *testing.T) {
	const wait = 200 * time.Millisecond
	url := pgtest.NewDatabase(t)
	postgres.SetHeadCheck(t, time.Hour) // watchHead stays out of it
	postgres.SetFlushAfter(t, wait)
	w, r := open(t, url), open(t, url)
	ctx := t.Context()
	r.Settle(ctx) // r hears w's notifications, and its first read of the head is done
	committed, _ := holdFlush(t, w)
	go w.Write(ctx, []api.Write{set("a", `{"v":1}`)})
	<-committed
	start := time.Now()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			rec, err := r.Get(ctx, "a")
			if err != nil || string(rec.Data) != `{"v":1}` {
				t.Errorf("Get = %+v, %v", rec, err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d < wait {
		t.Errorf("the reads answered after %v, without waiting %v for the notification", d, wait)
	}
}

// Every write acknowledged is still there after the database crashes
// (immediate shutdown, which loses WAL not yet written out): a group's
// asynchronous commit is acknowledged only after its flush.
func TestAcknowledgedWritesSurviveADatabaseCrash(t *testing.T) {
	pg, err := pgtest.StartDurable()
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Remove()
	defer pg.Stop()
	s, err := postgres.Open(t.Context(), pg.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, each = 8, 25
	var mu sync.Mutex
	var acked []int64
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				cs, err := s.Write(t.Context(), []api.Write{set(fmt.Sprint("r", i), fmt.Sprint(j))})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, cs[0].Seq)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := pg.Crash(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var head, rows int64
	if err := conn.QueryRow(t.Context(), `SELECT (SELECT seq FROM log_head), (SELECT count(*) FROM log)`).Scan(&head, &rows); err != nil {
		t.Fatal(err)
	}
	if len(acked) != writers*each || head != int64(writers*each) || rows != head {
		t.Fatalf("after the crash the log has %d rows up to %d; %d writes were acknowledged", rows, head, len(acked))
	}
}

// A group whose commit went through but whose flush failed (its
// connection broke between the two) is not given up: it is done and
// visible, so it flushes on another connection and its writers are
// answered, with its changes announced.
func TestWriteSurvivesALostFlush(t *testing.T) {
	url := pgtest.NewDatabase(t)
	w, r := open(t, url), open(t, url)
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var cut int
	w.SetBeforeFlush(func() {
		// The writer's connection has just run COMMIT.
		err := admin.QueryRow(ctx, `
			SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND query = 'COMMIT'`).Scan(&cut)
		if err != nil {
			t.Error(err)
		}
	})
	cs, err := w.Write(ctx, []api.Write{set("a", `{"v":1}`)})
	if err != nil || len(cs) != 1 || cs[0].Version != 1 {
		t.Fatalf("Write = %+v, %v", cs, err)
	}
	if cut != 1 {
		t.Fatalf("%d connections cut, want the writer's", cut)
	}
	got, err := r.Changes(ctx, cs[0].Seq-1, 10)
	if err != nil || len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("Changes = %+v, %v", got, err)
	}
}

// Reads of records that no change after the durable head touched answer
// at once, even while a group that committed after that head waits for its
// flush.
func TestReadsOfOtherRecordsDoNotWait(t *testing.T) {
	postgres.SetHeadCheck(t, time.Hour) // watchHead stays out of it
	postgres.SetFlushAfter(t, time.Hour)
	url := pgtest.NewDatabase(t)
	w, r := open(t, url), open(t, url)
	ctx := t.Context()
	if _, err := w.Write(ctx, []api.Write{set("c", `{"v":1}`), set("d", `{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	// r hears w's notifications, and its first read of the head is done.
	r.Settle(ctx)
	if _, err := r.Get(ctx, "c"); err != nil { // r knows of the write
		t.Fatal(err)
	}
	committed, _ := holdFlush(t, w)
	go w.Write(ctx, []api.Write{set("a", `{"v":1}`), {Kind: api.KindEvent, Name: "c"}})
	<-committed

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // they would wait an hour
	defer cancel()
	if rec, err := r.Get(ctx, "c"); err != nil || string(rec.Data) != `{"v":1}` {
		t.Errorf("Get(c) = %+v, %v", rec, err)
	}
	if _, err := r.Get(ctx, "b"); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("Get(b) = %v, want NOT_FOUND", err)
	}
	if recs, err := r.List(ctx, "c", "", 10); err != nil || len(recs) != 1 {
		t.Errorf("List(c) = %+v, %v", recs, err)
	}
	// A snapshot answers with a position, which callers take for the log's
	// head: it waits for it to be durable.
	snap := make(chan error, 1)
	go func() {
		_, _, err := r.Snapshot(ctx, []string{"c", "d"})
		snap <- err
	}()
	select {
	case err := <-snap:
		t.Errorf("Snapshot answered before the flush: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
}

// A role that may not call pg_logical_emit_message, which the flushes
// write, cannot open the store: Open says why rather than serve writes it
// could not make durable.
func TestOpenNeedsTheFlushMessage(t *testing.T) {
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("TEST_DATABASE_URL: roles are the server's own business")
	}
	url := pgtest.NewDatabase(t)
	open(t, url).Close() // migrated
	role := fmt.Sprintf("noflush_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, sql := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT ALL ON SCHEMA public TO " + role,
		"GRANT ALL ON ALL TABLES IN SCHEMA public TO " + role,
		"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO " + role,
		"REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC",
	} {
		if _, err := admin.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP OWNED BY "+role)
		admin.Exec(context.Background(), "DROP ROLE "+role)
	})
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.User(role)
	s, err := postgres.Open(t.Context(), u.String(), "", nil)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded without pg_logical_emit_message")
	}
	if !strings.Contains(err.Error(), "pg_logical_emit_message") {
		t.Errorf("Open: %v; want it to name pg_logical_emit_message", err)
	}
}
