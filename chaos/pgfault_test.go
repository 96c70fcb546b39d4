package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// pgFault runs writers on instance p and streams on the last of also (p
// when none) while fault breaks the database and heal mends it, then checks what the clients got: only 2xx
// and 503 UNAVAILABLE answers (allowed lists the other answers that the
// fault may cause, like "no answer" when the client's own timeout cuts a
// request), every acknowledged write in the database, the streams whole,
// and the instance writing again without a restart within patience.
func pgFault(t *testing.T, db string, p *proc, fault, heal func(), allowed []string, also ...*proc) *ledger {
	t.Helper()
	reader := p
	if len(also) > 0 {
		reader = also[len(also)-1]
	}
	const records = 8
	nWriters, nStreams := pick(8, 32), pick(4, 16)
	auth := "Bearer " + token(t, "writer")
	stop, stopWriters := make(chan struct{}), make(chan struct{})
	var readers, writers sync.WaitGroup
	followers := make([]*testkit.Tracker, nStreams)
	for i := range followers {
		f := testkit.NewTracker("stream "+itoa(i), []string{"k/" + itoa(i%records), "k/" + itoa((i+5)%records)}, []string{"ev/*"}, "Authorization", auth)
		s, err := f.Connect(reader.URL)
		if err != nil {
			t.Fatal(err)
		}
		followers[i] = f
		follow(f, s, []string{reader.URL}, stop, &readers)
	}
	l := newLedger()
	for w := range nWriters {
		writers.Add(1)
		go func() {
			defer writers.Done()
			writer(w, records, []string{p.URL}, auth, l, stopWriters, 5*time.Millisecond)
		}()
	}
	time.Sleep(pick(time.Second, 5*time.Second))
	before := l.ops.Load()
	fault()
	faulted, atFault := time.Now(), l.ops.Load()
	// While it lasts, /readyz and writes say so.
	ready := statusOf(p.URL + "/readyz")
	time.Sleep(pick(2*time.Second, 10*time.Second))
	during := l.ops.Load()
	heal()
	healed := time.Now()
	for end := time.Now().Add(patience); l.ops.Load() == during+0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	recovered := time.Since(healed)
	if l.ops.Load() == during {
		t.Fatalf("no write acknowledged %v after the database was mended\n%.3000s", patience, p.out.String())
	}
	for _, q := range append([]*proc{p}, also...) {
		q.waitReady(t, http.StatusOK)
	}
	time.Sleep(pick(time.Second, 5*time.Second))
	close(stopWriters)
	writers.Wait()
	t.Logf("%d acknowledged before the fault, %d while it lasted (%v; /readyz %d), writes again %v after it was mended, %d in all",
		before, during-atFault, healed.Sub(faulted).Round(time.Millisecond), ready, recovered.Round(time.Millisecond), l.ops.Load())

	log := verify(t, db, l)
	ix := testkit.NewIndex(log)
	testkit.CatchUp(followers, ix, patience)
	close(stop)
	readers.Wait()
	conns := 0
	for _, f := range followers {
		if err := f.Compare(f.Expect(ix)); err != nil {
			t.Error(err)
		}
		_, n := f.Delivered()
		conns += n
	}
	t.Logf("%d streams delivered every change of the log (%d connections)", nStreams, conns)
	l.mu.Lock()
	defer l.mu.Unlock()
	for what := range l.refused {
		if !strings.HasPrefix(what, "503 UNAVAILABLE") && !slices.Contains(allowed, what) {
			t.Errorf("%d writes answered %s; want 503 UNAVAILABLE", l.refused[what], what)
		}
	}
	if t.Failed() {
		for _, q := range append([]*proc{p}, also...) {
			logErrors(t, q)
		}
	}
	return l
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestPostgresRestart stops the database under load and starts it again
// on the same port: meanwhile writes get 503 UNAVAILABLE and /readyz
// 503; afterwards the instance writes again without a restart, no
// acknowledged write is lost and the streams deliver every change.
func TestPostgresRestart(t *testing.T) {
	pg := ownPostgres(t)
	db := pg.NewDatabase(t)
	p := start(t, pgEnv(db))
	pgFault(t, db, p, func() {
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := pg.Restart(); err != nil {
			t.Fatal(err)
		}
	}, nil)
	if n := p.metric(t, "switchboard_listener_reconnects_total"); n < 1 {
		t.Errorf("switchboard_listener_reconnects_total = %v after a restart of the database", n)
	}
}

// TestPostgresCrash crashes a durable database (fsync and synchronous
// commits on; immediate shutdown, which loses the WAL not yet written out)
// under load and starts it again, which recovers from its WAL: no
// acknowledged write is lost, and the streams, on another instance than
// the writers, delivered nothing that the crash took back (they deliver
// exactly the log that recovery left); nor did reads of the records there,
// throughout: every version read is in that log, with the data read.
func TestPostgresCrash(t *testing.T) {
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("TEST_DATABASE_URL: the database server is not this test's to crash")
	}
	pg, err := pgtest.StartDurable()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop(); pg.Remove() })
	db := pg.NewDatabase(t)
	p, q := start(t, pgEnv(db)), start(t, pgEnv(db))
	type read struct {
		Name    string
		Version int64
		Data    json.RawMessage
	}
	var reads []read
	stop, done := make(chan struct{}), make(chan struct{})
	auth := "Bearer " + token(t, "reader")
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a := send(http.MethodGet, q.URL+"/records/k/"+itoa(i%8), "", "Authorization", auth)
			var r read
			if a.Status == http.StatusOK && json.Unmarshal(a.Body, &r) == nil {
				reads = append(reads, r)
			} else {
				time.Sleep(10 * time.Millisecond) // the database is down, say
			}
		}
	}()
	stopReads := sync.OnceFunc(func() { close(stop); <-done })
	t.Cleanup(stopReads)
	pgFault(t, db, p, func() {
		if err := pg.Crash(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := pg.Restart(); err != nil {
			t.Fatal(err)
		}
	}, nil, q)
	stopReads()
	versions := map[string]testkit.LogEntry{}
	for _, e := range testkit.ReadLog(t, db, 0) {
		if e.Kind != "event" {
			versions[e.Name+" "+strconv.FormatInt(e.Version, 10)] = e
		}
	}
	for _, r := range reads {
		e, ok := versions[r.Name+" "+strconv.FormatInt(r.Version, 10)]
		if !ok || e.Kind == "delete" || (e.Kind == "set" && !jsonEqual(e.Data, string(r.Data))) {
			t.Errorf("read %s v%d = %.100s; the log after the crash has %+v", r.Name, r.Version, r.Data, e)
		}
	}
	t.Logf("%d reads on the streams' instance, every one in the log", len(reads))
}

// TestPostgresSlow makes every write of a record take a second (a trigger
// with pg_sleep on the records table): writes wait, none is lost, and
// once the trigger is gone the instance is as fast as before.
func TestPostgresSlow(t *testing.T) {
	db := postgres(t).NewDatabase(t)
	p := start(t, pgEnv(db))
	testkit.ExecSQL(t, db, `CREATE FUNCTION chaos_slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$`)
	pgFault(t, db, p, func() {
		testkit.ExecSQL(t, db, `CREATE TRIGGER chaos_slow BEFORE INSERT OR UPDATE ON records FOR EACH ROW EXECUTE FUNCTION chaos_slow()`)
	}, func() {
		testkit.ExecSQL(t, db, `DROP TRIGGER chaos_slow ON records`)
	}, []string{"no answer"})
}

// TestPostgresConnectionLimit fills the database's max_connections with
// other clients and cuts the instance's connections: writes get 503
// UNAVAILABLE while no connection is to be had, and once the other
// clients leave the instance writes again without a restart.
func TestPostgresConnectionLimit(t *testing.T) {
	pg := ownPostgres(t)
	db := pg.NewDatabase(t)
	u, _ := url.Parse(db)
	name := strings.TrimPrefix(u.Path, "/")
	// The instance and the other clients are ordinary roles: superusers
	// have reserved connections.
	testkit.ExecSQL(t, pg.URL, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chaos_app') THEN CREATE ROLE chaos_app LOGIN; END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chaos_filler') THEN CREATE ROLE chaos_filler LOGIN; END IF;
		END $$`, "ALTER DATABASE "+name+" OWNER TO chaos_app")
	app, filler := *u, *u
	app.User, filler.User = url.User("chaos_app"), url.User("chaos_filler")
	p := start(t, pgEnv(app.String()))

	var fillers []*pgx.Conn
	defer func() {
		for _, c := range fillers {
			c.Close(context.Background())
		}
	}()
	// The test's own queries during the fault go through one connection
	// opened before it. A new one could find no slot at all: every
	// attempt of the instance to connect holds a slot for a moment
	// before it is refused, and so may eat into the superusers' reserve.
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	admin, err := pgx.Connect(ctx, pg.URL)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	run := func(sql string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	query := func(sql string, v *int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if err := admin.QueryRow(ctx, sql).Scan(v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	backends := func() (n int) {
		t.Helper()
		query(`SELECT count(*) FROM pg_stat_activity WHERE usename = 'chaos_app'`, &n)
		return n
	}
	// fill takes every slot left to ordinary roles. A refusal does not
	// say that they are all taken: an attempt of the instance holds one
	// for a moment before it is refused itself, and it tries hundreds
	// of times a second. So fill goes on until the client backends of
	// other roles hold max_connections less the superusers' reserve.
	var slots int
	query(`SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int`, &slots)
	fill := func() {
		for end := time.Now().Add(patience); ; {
			var others int
			query(`SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename <> 'chaos_app'`, &others)
			if others >= slots {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("other roles hold %d connections of %d after %v", others, slots, patience)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := pgx.Connect(ctx, filler.String())
			cancel()
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "53300":
				time.Sleep(5 * time.Millisecond)
			case err != nil:
				t.Fatalf("filler connection %d: %v", len(fillers), err)
			default:
				fillers = append(fillers, c)
			}
		}
	}
	const cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'chaos_app'"
	pgFault(t, db, p, func() {
		// Keep the instance out while its connections are cut and
		// other clients take every slot, then let it try again: only
		// max_connections stops it then.
		shut := func() {
			run("ALTER ROLE chaos_app CONNECTION LIMIT 0")
			run(cut)
			for end := time.Now().Add(patience); backends() > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatal("the instance's connections did not end")
				}
			}
			fill()
			run("ALTER ROLE chaos_app CONNECTION LIMIT -1")
		}
		shut()
		// A slot that another session frees after the fill (a connection
		// of an earlier test ending late) may go to the instance: take it
		// back and fill again, a few times, the instance kept out meanwhile
		// as before (its writers retry at once, and would win the slot
		// that the cut frees).
		n := 0
		for range 5 {
			time.Sleep(time.Second)
			if n = backends(); n == 0 {
				break
			}
			shut()
		}
		if n > 0 {
			t.Errorf("the instance holds %d connections with max_connections filled", n)
		}
		t.Logf("%d other connections fill max_connections", len(fillers))
	}, func() {
		for _, c := range fillers {
			c.Close(context.Background())
		}
		fillers = nil
	}, nil)
}

// logErrors logs the distinct errors of the process's log with their
// counts.
func logErrors(t *testing.T, p *proc) {
	t.Helper()
	seen := map[string]int{}
	for _, line := range strings.Split(p.out.String(), "\n") {
		var l struct{ Level, Msg, Err string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "ERROR" {
			seen[l.Msg+": "+l.Err]++
		}
	}
	for e, n := range seen {
		t.Logf("server, %d times: %.400s", n, e)
	}
}
