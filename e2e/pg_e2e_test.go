package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
	"github.com/switchboard-dev/switchboard/internal/testkit"
	"github.com/switchboard-dev/switchboard/migrations"
	"github.com/switchboard-dev/switchboard/server"
)

// TestMain starts the PostgreSQL server of the TestPG tests (from the
// installed binaries, or TEST_DATABASE_URL) once for the package.
func TestMain(m *testing.M) { pgtest.Main(m) }

// pgServers starts n servers on one fresh database and waits until every
// one is ready (its notification listener connected), as a load balancer
// would before routing to it. With E2E_PEERS=1 in the test's environment,
// each has PEER_URL, as fly.postgres.toml sets it: the writes then go
// through the sequencer (make test runs the tests so a second time).
func pgServers(t testing.TB, n int, env map[string]string) (string, []*testServer) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	servers := make([]*testServer, n)
	for i := range servers {
		vars := map[string]string{"DATABASE_URL": url}
		if os.Getenv("E2E_PEERS") != "" {
			port := strconv.Itoa(testkit.FreePort(t))
			vars["PORT"], vars["PEER_URL"] = port, "http://127.0.0.1:"+port
		}
		for k, v := range env {
			vars[k] = v
		}
		servers[i] = startServer(t, vars)
	}
	for _, s := range servers {
		waitReadyz(t, s.URL, http.StatusOK, 30*time.Second)
	}
	return url, servers
}

// readyzStatus returns the status of GET /readyz, or 0 if it did not answer.
func readyzStatus(base string) int {
	resp, err := pgClient.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitReadyz(t testing.TB, base string, want int, timeout time.Duration) {
	t.Helper()
	got := 0
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if got = readyzStatus(base); got == want {
			return
		}
	}
	t.Fatalf("%s/readyz answered %d for %v, want %d", base, got, timeout, want)
}

// seqOf returns the log position of a frame's id ("<stream>-<seq>").
func seqOf(t testing.TB, f frame) int64 {
	t.Helper()
	i := strings.LastIndexByte(f.ID, '-')
	n, err := strconv.ParseInt(f.ID[i+1:], 10, 64)
	if i < 0 || err != nil {
		t.Fatalf("%s frame without a resume id: %q", f.Event, f.ID)
	}
	return n
}

// expectRecord reads the next frame and checks it is a record frame of
// name at version with data.
func expectRecord(t testing.TB, c *sseClient, name string, version float64, data string) frame {
	t.Helper()
	f := c.Expect(t, "record")
	var m struct {
		Name    string
		Version float64
		Data    json.RawMessage
	}
	if err := json.Unmarshal([]byte(f.Data), &m); err != nil {
		t.Fatalf("record frame %q: %v", f.Data, err)
	}
	if m.Name != name || m.Version != version || !jsonEqual(m.Data, []byte(data)) {
		t.Fatalf("record frame %s v%v %.200s, want %s v%v %.200s", m.Name, m.Version, m.Data, name, version, data)
	}
	return f
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// TestPGCrossInstance: two servers on one database. Record writes, path
// writes, events and a 20 KiB record written on one reach streams on the
// other; a stream opened on A resumes on B with no gap and no duplicate;
// subscription changes sent to A reach the stream that B holds.
func TestPGCrossInstance(t *testing.T) {
	url, srv := pgServers(t, 2, nil)
	a, b := srv[0].URL, srv[1].URL

	onB := openSSE(t, b+"/stream?record=doc&record=big&event=chat/*", "")
	onA := openSSE(t, a+"/stream?record=doc", "")
	onB.Expect(t, "ready")
	onA.Expect(t, "ready")
	for _, c := range []*sseClient{onB, onB, onA} {
		if m := c.Expect(t, "snapshot").Decode(t); m["version"] != 0.0 {
			t.Fatalf("snapshot of a missing record: %v", m)
		}
	}

	// Record and path writes, both ways.
	put(t, a, "doc", `{"title":"x","n":1}`)
	put(t, a, "doc?path=n", `2`)
	put(t, b, "doc?path=tags.first", `"t"`)
	for _, c := range []*sseClient{onB, onA} {
		expectRecord(t, c, "doc", 1, `{"title":"x","n":1}`)
		expectRecord(t, c, "doc", 2, `{"title":"x","n":2}`)
		expectRecord(t, c, "doc", 3, `{"title":"x","n":2,"tags":{"first":"t"}}`)
	}

	// Events.
	id := publishEvent(t, a, "chat/room1", `{"text":"hi"}`)
	f := onB.Expect(t, "event")
	if m := f.Decode(t); m["name"] != "chat/room1" || m["id"] != id || !jsonEqual(mustJSON(m["data"]), []byte(`{"text":"hi"}`)) {
		t.Fatalf("event frame: %s (published id %s)", f.Data, id)
	}
	if strconv.FormatInt(seqOf(t, f), 10) != id {
		t.Fatalf("event frame id %s, published as %s", f.ID, id)
	}

	// A value far beyond NOTIFY's 8000 bytes.
	big := `{"blob":"` + strings.Repeat("0123456789abcdef", 20<<10/16) + `"}`
	put(t, a, "big", big)
	expectRecord(t, onB, "big", 1, big)
	if st, _, body := do(t, http.MethodGet, b+"/records/big", "", ""); st != 200 || !bytes.Contains(body, []byte(big)) {
		t.Fatalf("GET big on B: %d, %d bytes", st, len(body))
	}

	// Resume: the stream of A, cut, comes back on B with its Last-Event-ID.
	token := onA.LastID
	onA.Close()
	put(t, a, "doc", `{"r":1}`)
	put(t, b, "doc?path=r", `2`)
	put(t, a, "doc", `{"r":3}`)
	res := openSSE(t, b+"/stream?record=doc", token)
	ready := res.Expect(t, "ready")
	if want := token[:strings.LastIndexByte(token, '-')]; ready.Decode(t)["stream"] != want || ready.ID != token {
		t.Fatalf("ready on B: id %s %s, want stream %s at %s", ready.ID, ready.Data, want, token)
	}
	missed := []frame{
		expectRecord(t, res, "doc", 4, `{"r":1}`),
		expectRecord(t, res, "doc", 5, `{"r":2}`),
		expectRecord(t, res, "doc", 6, `{"r":3}`),
	}
	var docLog []int64
	for _, e := range testkit.ReadLog(t, url, seqOf(t, ready)) {
		if e.Name == "doc" {
			docLog = append(docLog, e.Seq)
		}
	}
	if len(docLog) != 3 || seqOf(t, missed[0]) != docLog[0] || seqOf(t, missed[1]) != docLog[1] || seqOf(t, missed[2]) != docLog[2] {
		t.Fatalf("replayed ids %s %s %s, log positions of doc %v", missed[0].ID, missed[1].ID, missed[2].ID, docLog)
	}
	if f, ok := res.TryNext(300 * time.Millisecond); ok {
		t.Fatalf("after the replay: unexpected %s %s", f.Event, f.Data)
	}
	put(t, a, "doc?path=r", `4`)
	expectRecord(t, res, "doc", 7, `{"r":4}`)
	for v := 4; v <= 7; v++ {
		if m := onB.Expect(t, "record").Decode(t); m["version"] != float64(v) {
			t.Fatalf("B's first stream: %v, want version %d", m, v)
		}
	}

	t.Run("dynamic subscriptions", func(t *testing.T) { testPGDynamic(t, a, b) })
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// testPGDynamic changes, through A, the subscriptions of a stream that B
// holds, then resumes that stream on A.
func testPGDynamic(t *testing.T, a, b string) {
	dyn := openSSE(t, b+"/stream", "")
	id := dyn.Expect(t, "ready").Decode(t)["stream"].(string)
	subs := a + "/stream/" + id + "/subscriptions"

	if st, _, body := do(t, http.MethodPost, subs, "application/json", `{"record":"doc"}`); st != http.StatusNoContent {
		t.Fatalf("add record through A: %d %s", st, body)
	}
	if m := dyn.Expect(t, "snapshot").Decode(t); m["name"] != "doc" || m["version"] != 7.0 {
		t.Fatalf("snapshot after adding through A: %v", m)
	}
	put(t, a, "doc", `{"d":8}`)
	expectRecord(t, dyn, "doc", 8, `{"d":8}`)

	if st, _, body := do(t, http.MethodPost, subs, "application/json", `{"event":"news/*"}`); st != http.StatusNoContent {
		t.Fatalf("add event through A: %d %s", st, body)
	}
	// The change travels to B over the bus: publish until an event arrives.
	arrived := false
	for i := 0; i < 50 && !arrived; i++ {
		publishEvent(t, a, "news/probe", strconv.Itoa(i))
		for {
			f, ok := dyn.TryNext(200 * time.Millisecond)
			if !ok {
				break
			}
			if f.Event != "event" || f.Decode(t)["name"] != "news/probe" {
				t.Fatalf("while probing: %s %s", f.Event, f.Data)
			}
			arrived = true
		}
	}
	if !arrived {
		t.Fatal("the event subscription added through A never took effect on B")
	}

	if st, _, body := do(t, http.MethodDelete, subs, "application/json", `{"record":"doc"}`); st != http.StatusNoContent {
		t.Fatalf("remove record through A: %d %s", st, body)
	}
	// Once the removal has reached B, a write to doc sends nothing while
	// an event published after it arrives.
	removed := false
	for i := 0; i < 50 && !removed; i++ {
		put(t, a, "doc?path=d", strconv.Itoa(100+i))
		publishEvent(t, a, "news/after", strconv.Itoa(i))
		var kinds []string
		for len(kinds) == 0 || kinds[len(kinds)-1] != "event" {
			kinds = append(kinds, dyn.Next(t, 5*time.Second).Event)
		}
		removed = len(kinds) == 1
	}
	if !removed {
		t.Fatal("the record subscription removed through A still delivers on B")
	}

	// The stream resumes on A with the subscriptions as changed through A.
	token := dyn.LastID
	dyn.Close()
	publishEvent(t, b, "news/resumed", `1`)
	c := openSSE(t, a+"/stream", token)
	ready := c.Expect(t, "ready").Decode(t)
	if ready["stream"] != id || len(ready["subscriptions"].([]any)) != 1 {
		t.Fatalf("ready on A: %v, want stream %s with one subscription", ready, id)
	}
	if m := c.Expect(t, "event").Decode(t); m["name"] != "news/resumed" {
		t.Fatalf("after resuming on A: %v", m)
	}
}

// TestPGDirectSQL: rows updated, inserted and deleted with plain SQL reach
// streams on both instances, and the API's writes carry on from there.
func TestPGDirectSQL(t *testing.T) {
	url, srv := pgServers(t, 2, nil)
	put(t, srv[0].URL, "sql/doc", `{"by":"api"}`)
	var streams []*sseClient
	for _, s := range srv {
		c := openSSE(t, s.URL+"/stream?record=sql/doc&record=sql/new", "")
		c.Expect(t, "ready")
		c.Expect(t, "snapshot")
		c.Expect(t, "snapshot")
		streams = append(streams, c)
	}
	testkit.ExecSQL(t, url, `UPDATE records SET data = '{"by": "sql"}' WHERE name = 'sql/doc'`)
	testkit.ExecSQL(t, url, `INSERT INTO records (name, version, data) VALUES ('sql/new', 0, '{"n": [1, 2]}')`)
	testkit.ExecSQL(t, url, `DELETE FROM records WHERE name = 'sql/doc'`)
	put(t, srv[1].URL, "sql/new?path=m", `"api"`)
	for _, c := range streams {
		f := expectRecord(t, c, "sql/doc", 2, `{"by":"sql"}`)
		if m := f.Decode(t); m["op"] != "set" {
			t.Fatalf("SQL update frame: %v", m)
		}
		expectRecord(t, c, "sql/new", 1, `{"n":[1,2]}`)
		if m := c.Expect(t, "delete").Decode(t); m["name"] != "sql/doc" || m["version"] != 3.0 {
			t.Fatalf("SQL delete frame: %v", m)
		}
		expectRecord(t, c, "sql/new", 2, `{"n":[1,2],"m":"api"}`)
	}
	if st, _, _ := do(t, http.MethodGet, srv[1].URL+"/records/sql/doc", "", ""); st != http.StatusNotFound {
		t.Fatalf("GET sql/doc after the SQL delete: %d", st)
	}
}

// TestPGMigrateCommand: `switchboard migrate` applies every migration to a
// fresh database and returns; run again, it changes nothing.
func TestPGMigrateCommand(t *testing.T) {
	url := pgtest.NewDatabase(t)
	getenv := func(k string) string { return map[string]string{"DATABASE_URL": url}[k] }
	var want int64
	files, _ := fs.Glob(migrations.FS, "*.sql")
	for _, f := range files {
		n, _ := strconv.ParseInt(f[:strings.IndexByte(f, '_')], 10, 64)
		want = max(want, n)
	}
	if len(files) == 0 || want == 0 {
		t.Fatalf("no numbered migrations in %v", files)
	}
	applied := func() (rows, version int64) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, `SELECT count(*), coalesce(max(version_id), -1) FROM goose_db_version WHERE is_applied`).Scan(&rows, &version)
		if err != nil {
			t.Fatalf("goose_db_version: %v", err)
		}
		for _, table := range []string{"records", "log", "log_head", "log_trimmed", "streams"} {
			var ok bool
			if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
				t.Fatalf("table %s after migrate: %v", table, err)
			}
		}
		return rows, version
	}

	var out bytes.Buffer
	if err := server.Run(t.Context(), []string{"switchboard", "migrate"}, getenv, &out, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if !strings.Contains(out.String(), "migrations applied") {
		t.Errorf("migrate said %q", out.String())
	}
	rows, version := applied()
	if version != want {
		t.Fatalf("migrated to version %d, want %d (%v)", version, want, files)
	}
	if err := server.Run(t.Context(), []string{"switchboard", "migrate"}, getenv, &out, nil); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if rows2, version2 := applied(); rows2 != rows || version2 != version {
		t.Fatalf("second migrate changed goose_db_version: %d rows at %d, then %d at %d", rows, version, rows2, version2)
	}
	noDB := func(string) string { return "" }
	if err := server.Run(t.Context(), []string{"switchboard", "migrate"}, noDB, &out, nil); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("migrate without DATABASE_URL: %v", err)
	}
}
