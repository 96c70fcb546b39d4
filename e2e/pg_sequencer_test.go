package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
	"github.com/switchboard-dev/switchboard/internal/testkit"
	"github.com/switchboard-dev/switchboard/peer"
)

// sequencerServers starts n servers on one database, each with PEER_URL
// (a port chosen before it starts), and waits until one of them holds the
// sequencer's lease and the others know it. It returns the database's URL,
// the servers and the index of the sequencer.
func sequencerServers(t *testing.T, n int, env map[string]string) (string, []*testServer, int) {
	t.Helper()
	db := pgtest.NewDatabase(t)
	servers := make([]*testServer, n)
	for i := range servers {
		port := testkit.FreePort(t)
		vars := map[string]string{
			"DATABASE_URL": db,
			"PORT":         strconv.Itoa(port),
			"PEER_URL":     fmt.Sprintf("http://127.0.0.1:%d", port),
		}
		for k, v := range env {
			vars[k] = v
		}
		servers[i] = startServer(t, vars)
	}
	for _, s := range servers {
		waitReadyz(t, s.URL, http.StatusOK, 30*time.Second)
	}
	return db, servers, waitSequencer(t, db, servers)
}

// waitSequencer waits until exactly one of servers says it is the
// sequencer, the lease in the database names it, and every server has
// read that (waitLease), and returns its index.
func waitSequencer(t *testing.T, db string, servers []*testServer) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		holders := []int{}
		for i, s := range servers {
			if metrics(t, s.URL)["switchboard_sequencer"] == 1 {
				holders = append(holders, i)
			}
		}
		if len(holders) == 1 && leaseURL(t, db) == servers[holders[0]].URL {
			waitLease(t, servers, servers[holders[0]].URL)
			return holders[0]
		}
	}
	t.Fatal("no single sequencer in 15 s")
	return -1
}

// waitLease waits until the last lease that each of servers logged
// reading names holder.
func waitLease(t *testing.T, servers []*testServer, holder string) {
	t.Helper()
	for _, s := range servers {
		last := ""
		for deadline := time.Now().Add(10 * time.Second); last != holder && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if ls := find(logLines(t, s.Log()), "sequencer lease", "", ""); len(ls) > 0 {
				last, _ = ls[len(ls)-1]["holder"].(string)
			}
		}
		if last != holder {
			t.Fatalf("%s: the last lease read names %q, want %q", s.URL, last, holder)
		}
	}
}

// leaseURL returns the URL of the lease's holder as the database has it,
// "" when it has run out.
func leaseURL(t *testing.T, db string) string {
	t.Helper()
	var url string
	err := pgQueryRow(t, db, `SELECT url FROM sequencer WHERE until > now()`).Scan(&url)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return url
}

// pgQueryRow runs one query on a connection of its own.
func pgQueryRow(t *testing.T, db, sql string, args ...any) pgx.Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn.QueryRow(ctx, sql, args...)
}

// forwardedSample is the count of a follower's writes by outcome.
func forwardedSample(t *testing.T, s *testServer, outcome string) float64 {
	return metrics(t, s.URL)[`switchboard_writes_forwarded_total{outcome="`+outcome+`"}`]
}

// TestPGSequencerMergesWrites: with PEER_URL, one of three instances
// takes the lease, the others forward their writes to it, and writes that
// race through all three stay exact: 3 instances x 4 clients each add 1 to
// one counter 20 times, with If-Match and a retry on 412, and the counter
// ends at 240 with every add answered once. The followers' writes went to
// the sequencer (their forwarded counts), and its groups merged writes of
// several instances (changes per commit above one instance's clients).
func TestPGSequencerMergesWrites(t *testing.T) {
	db, servers, seq := sequencerServers(t, 3, nil)
	put(t, servers[0].URL, "counter", `0`)
	const clients, adds = 4, 20
	type counter struct {
		Version int64
		Data    int
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(servers)*clients)
	for _, s := range servers {
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < adds; {
					st, b, err := tryDo(http.MethodGet, s.URL+"/records/counter", "", "")
					if err != nil || st != http.StatusOK {
						errs <- fmt.Errorf("GET: %d %s %v", st, b, err)
						return
					}
					var rec counter
					json.Unmarshal(b, &rec)
					st, b, err = tryDo(http.MethodPut, s.URL+"/records/counter", "application/json", strconv.Itoa(rec.Data+1), "If-Match", strconv.FormatInt(rec.Version, 10))
					switch {
					case err != nil:
						errs <- err
						return
					case st == http.StatusPreconditionFailed && strings.Contains(string(b), "VERSION_CONFLICT"):
					case st == http.StatusOK:
						n++
					default:
						errs <- fmt.Errorf("PUT: %d %s", st, b)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, _, b := do(t, http.MethodGet, servers[seq].URL+"/records/counter", "", "")
	var rec counter
	json.Unmarshal(b, &rec)
	if want := len(servers) * clients * adds; rec.Data != want || rec.Version != int64(want)+1 {
		t.Fatalf("counter = %d at version %d, want %d at %d", rec.Data, rec.Version, want, want+1)
	}
	for i, s := range servers {
		got := forwardedSample(t, s, "forwarded")
		if i == seq && got != 0 || i != seq && got < clients*adds {
			t.Errorf("server %d (sequencer %v) forwarded %v writes", i, i == seq, got)
		}
	}

	// Writes of distinct records from every instance at once: the
	// followers' writes join the sequencer's groups, so that a commit
	// holds more than one instance's clients can send at once.
	for i, s := range servers {
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range 30 {
					if st, b, err := tryDo(http.MethodPut, fmt.Sprintf("%s/records/m/%d/%d/%d", s.URL, i, c, n), "application/json", `1`); err != nil || st != http.StatusCreated {
						t.Errorf("PUT: %d %s %v", st, b, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	var most int64
	if err := pgQueryRow(t, db, `SELECT max(c) FROM (SELECT count(*) c FROM log WHERE name LIKE 'm/%' GROUP BY xmin::text) g`).Scan(&most); err != nil {
		t.Fatal(err)
	}
	if most <= clients {
		t.Errorf("the largest commit held %d changes: groups did not merge across instances", most)
	}
	t.Logf("the largest commit held %d changes", most)
}

// TestPGSequencerFailover: the sequencer stops while clients write
// through the two other instances. Every write is answered (a follower
// serves writes itself while the lease is moving), every acknowledged
// write is there afterwards, and one of the two takes the lease and the
// other forwards to it.
func TestPGSequencerFailover(t *testing.T) {
	db, servers, seq := sequencerServers(t, 3, nil)
	var rest []*testServer
	for i, s := range servers {
		if i != seq {
			rest = append(rest, s)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]string{}
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := rest[w%len(rest)]
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				name, body := fmt.Sprintf("w%d/%d", w, n), strconv.Itoa(n)
				st, b, err := tryDo(http.MethodPut, s.URL+"/records/"+name, "application/json", body)
				if err != nil || st != http.StatusCreated {
					errs <- fmt.Errorf("PUT %s: %d %s %v", name, st, b, err)
					return
				}
				mu.Lock()
				acked[name] = body
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	servers[seq].Stop(t)
	newSeq := -1
	for deadline := time.Now().Add(10 * time.Second); newSeq < 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i, s := range rest {
			if metrics(t, s.URL)["switchboard_sequencer"] == 1 && leaseURL(t, db) == s.URL {
				newSeq = i
			}
		}
	}
	if newSeq < 0 {
		t.Fatal("no instance took the lease within 10 s of the sequencer's stop")
	}
	follower := rest[1-newSeq]
	waitLease(t, []*testServer{follower}, rest[newSeq].URL)
	before := forwardedSample(t, follower, "forwarded")
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if after := forwardedSample(t, follower, "forwarded"); after <= before {
		t.Errorf("the follower forwarded nothing to the new sequencer (%v, then %v)", before, after)
	}
	for name, body := range acked {
		st, _, b := do(t, http.MethodGet, rest[newSeq].URL+"/records/"+name, "", "")
		var rec struct{ Data json.RawMessage }
		json.Unmarshal(b, &rec)
		if st != http.StatusOK || string(rec.Data) != body {
			t.Fatalf("acknowledged %s = %s is %d %s", name, body, st, b)
		}
	}
	t.Logf("%d writes acknowledged", len(acked))
}

// TestPGSequencerUnreachable: a lease whose holder cannot be connected
// to (a port nothing listens on), or whose holder refuses a link
// (something else answers there), leaves the writes served where they
// arrive, since none was sent; one whose holder takes the link and the
// write, and hangs up unanswered, is answered 503 UNAVAILABLE, since it
// may have been applied.
func TestPGSequencerUnreachable(t *testing.T) {
	db, servers, _ := sequencerServers(t, 2, nil)
	// Another instance holds the lease for a minute: ours follow it.
	setLease := func(url string) {
		t.Helper()
		var ok bool
		if err := pgQueryRow(t, db, `UPDATE sequencer SET url = $1, token = 'elsewhere', until = now() + interval '1 minute' RETURNING true`, url).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		waitLease(t, servers, url)
	}
	servedHere := func(s *testServer, name string) {
		t.Helper()
		before := forwardedSample(t, s, "served_here")
		put(t, s.URL, name, `1`)
		if got := forwardedSample(t, s, "served_here"); got != before+1 {
			t.Errorf("%s: served_here %v, then %v", name, before, got)
		}
	}

	setLease(fmt.Sprintf("http://127.0.0.1:%d", testkit.FreePort(t)))
	for i, s := range servers {
		servedHere(s, fmt.Sprintf("here/%d", i))
	}

	// Something else answers at the holder's address: it refuses the
	// link, so the write is served here.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	defer other.Close()
	setLease(other.URL)
	servedHere(servers[1], "other")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // takes the link and a write's whole frame, then hangs up without answering
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err == nil {
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+peer.Protocol+"\r\n\r\n")
				var head [4]byte
				if _, err := io.ReadFull(br, head[:]); err == nil {
					io.CopyN(io.Discard, br, int64(binary.BigEndian.Uint32(head[:])))
				}
			}
			c.Close()
		}
	}()
	setLease("http://" + ln.Addr().String())
	st, _, b := do(t, http.MethodPut, servers[0].URL+"/records/lost", "application/json", `1`)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(b), `"UNAVAILABLE"`) {
		t.Fatalf("a write whose answer was lost: %d %s, want 503 UNAVAILABLE", st, b)
	}
	if got := forwardedSample(t, servers[0], "lost"); got != 1 {
		t.Errorf("lost = %v, want 1", got)
	}
	if strings.Contains(string(b), ln.Addr().String()) {
		t.Errorf("the answer names the sequencer's address: %s", b)
	}
	if st, _, b := do(t, http.MethodGet, servers[0].URL+"/records/lost", "", ""); st != http.StatusNotFound {
		t.Errorf("the lost write was applied here too: %d %s", st, b)
	}

	// The lease runs out: one of ours takes it again and writes flow.
	testkit.ExecSQL(t, db, `UPDATE sequencer SET until = now()`)
	waitSequencer(t, db, servers)
	for _, s := range servers {
		put(t, s.URL, "after", `2`)
	}
}

// TestPGSequencerPeerSecret: a write that a follower forwarded counts
// against the rate limit once, on the follower; a client that sends the
// peers' header is limited as any client, and served where it arrived;
// and the links' path is a 404 to anything but a peer.
func TestPGSequencerPeerSecret(t *testing.T) {
	// 2 a second, in bursts of 4: 8 writes at once from one address,
	// half through each instance, pass only if none is counted twice.
	_, servers, seq := sequencerServers(t, 2, map[string]string{"RATE_LIMIT": "2"})
	leader, follower := servers[seq], servers[1-seq]
	statuses := func(base, prefix string, headers ...string) []int {
		var out []int
		for i := range 4 {
			st, _, _ := do(t, http.MethodPut, base+"/records/"+prefix+strconv.Itoa(i), "application/json", `1`, headers...)
			out = append(out, st)
		}
		return out
	}
	via, direct := statuses(follower.URL, "f"), statuses(leader.URL, "l")
	if slices.Contains(via, http.StatusTooManyRequests) || slices.Contains(direct, http.StatusTooManyRequests) {
		t.Errorf("4 writes through the follower: %v, then 4 to the sequencer: %v; want no 429", via, direct)
	}
	if got := forwardedSample(t, follower, "forwarded"); got != 4 {
		t.Errorf("the follower forwarded %v writes, want 4", got)
	}
	if got := statuses(leader.URL, "g", "X-Switchboard-Peer", "guessed"); !slices.Contains(got, http.StatusTooManyRequests) {
		t.Errorf("a guessed secret: %v, want some 429", got)
	}
	// The links' path answers as a path that does not exist, unless asked
	// for a link with the lease's secret.
	for _, c := range []struct {
		method  string
		headers []string
	}{
		{http.MethodGet, nil},
		{http.MethodPost, nil},
		{http.MethodGet, []string{"Connection", "Upgrade", "Upgrade", peer.Protocol, peer.SecretHeader, "guessed"}},
	} {
		st, h, b := do(t, c.method, leader.URL+peer.Path, "", "", c.headers...)
		if st != http.StatusNotFound || h.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(b), `"NOT_FOUND"`) {
			t.Errorf("%s %s %v: %d %s %s, want 404 NOT_FOUND", c.method, peer.Path, c.headers, st, h.Get("Content-Type"), b)
		}
	}
}

// TestPGSequencerAnswers: a forwarded write is answered as the same
// write sent to the sequencer directly is (status, headers, problem+json
// with the client's request id). A write refused before it is applied
// (a patch of the wrong type) is answered where it arrived.
func TestPGSequencerAnswers(t *testing.T) {
	_, servers, seq := sequencerServers(t, 2, map[string]string{"CORS_ORIGINS": "https://app.example"})
	leader, follower := servers[seq], servers[1-seq]
	type answer struct {
		Status  int
		Headers []string
		Body    string
	}
	ask := func(base, method, path, body string, headers ...string) answer {
		t.Helper()
		headers = append(headers, "Origin", "https://app.example", "X-Request-Id", "req-"+strconv.Itoa(len(path)))
		st, h, b := do(t, method, base+path, "application/json", body, headers...)
		var keys []string
		for k := range h {
			if k != "Date" && k != "Content-Length" { // lengths: the bodies are compared
				keys = append(keys, k+": "+strings.Join(h.Values(k), ","))
			}
		}
		slices.Sort(keys)
		if h.Get("X-Request-Id") != "req-"+strconv.Itoa(len(path)) {
			t.Errorf("%s %s: X-Request-Id %q", method, path, h.Get("X-Request-Id"))
		}
		return answer{st, keys, string(b)}
	}
	for _, c := range []struct {
		method, body string
		headers      []string
	}{
		{http.MethodPut, `{"a":1}`, nil},
		{http.MethodPut, `{"a":2}`, []string{"If-Match", "1"}},
		{http.MethodPut, `{"a":3}`, []string{"If-Match", "7"}},
		{http.MethodPatch, `{"b":1}`, []string{"Content-Type", "application/merge-patch+json"}},
		{http.MethodPatch, `{"b":1}`, []string{"Content-Type", "text/plain"}},
		{http.MethodDelete, ``, nil},
		{http.MethodDelete, ``, nil},
	} {
		// The same request to a record of each: versions, and so bodies, match.
		got := ask(follower.URL, c.method, "/records/via", c.body, c.headers...)
		want := ask(leader.URL, c.method, "/records/dir", c.body, c.headers...)
		got.Body = strings.ReplaceAll(got.Body, "via", "dir")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %v: forwarded %+v, direct %+v", c.method, c.headers, got, want)
		}
	}
	got, want := ask(follower.URL, http.MethodPost, "/events/e", `1`), ask(leader.URL, http.MethodPost, "/events/e", `1`)
	got.Body, want.Body = "", "" // ids differ
	if !reflect.DeepEqual(got, want) || got.Status != http.StatusAccepted {
		t.Errorf("POST /events: forwarded %+v, direct %+v", got, want)
	}
	if n := forwardedSample(t, follower, "forwarded"); n != 7 {
		t.Errorf("forwarded %v, want 7", n)
	}

	// A write that no frame can carry (a path that is not UTF-8) is
	// served here, answered as the sequencer answers it, and does not
	// make the follower pass the sequencer over.
	put(t, follower.URL, "via2", `{}`)
	put(t, leader.URL, "dir2", `{}`)
	got = ask(follower.URL, http.MethodPut, "/records/via2?path=/%FF", `1`)
	want = ask(leader.URL, http.MethodPut, "/records/dir2?path=/%FF", `1`)
	got.Body = strings.ReplaceAll(got.Body, "via2", "dir2")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("a path that is not UTF-8: served here %+v, by the sequencer %+v", got, want)
	}
	before := forwardedSample(t, follower, "forwarded")
	put(t, follower.URL, "via3", `1`)
	if n := forwardedSample(t, follower, "forwarded"); n != before+1 {
		t.Errorf("the write after it: forwarded %v, then %v", before, n)
	}
}

// TestPGSequencerFeeds: with PEER_URL, the sequencer sends the
// announcements of its commits over the followers' feeds, and once every
// instance takes them from one, its commits need no NOTIFY (its count of
// notify transactions stops moving while its announced groups grow);
// streams on every follower get each event, and each follower took it
// from its feed. When the sequencer stops, one follower takes the lease
// and the other follows it: its commits are notified until the other
// has a feed from it, and then go without a NOTIFY again.
func TestPGSequencerFeeds(t *testing.T) {
	db, servers, seq := sequencerServers(t, 3, nil)
	var followers []*testServer
	var streams []*sseClient
	for i, s := range servers {
		if i != seq {
			followers = append(followers, s)
			c := openSSE(t, s.URL+"/stream?event=news", "")
			c.Expect(t, "ready")
			streams = append(streams, c)
		}
	}
	seqURL := servers[seq].URL
	// publish publishes an event on the sequencer, checks that each
	// stream in on gets it within 5 s, and reports whether the sequencer
	// sent a NOTIFY for it.
	publish := func(on []*sseClient) bool {
		t.Helper()
		m := metrics(t, seqURL)
		groups, notes := m["switchboard_notified_groups_total"], m["switchboard_notify_transactions_total"]
		id := publishEvent(t, seqURL, "news", `1`)
		for _, c := range on {
			for {
				f, ok := c.TryNext(5 * time.Second)
				if !ok {
					t.Fatalf("event %s did not reach a follower's stream within 5 s", id)
				}
				if f.Event == "event" && f.Decode(t)["id"] == id {
					break
				}
			}
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			m := metrics(t, seqURL)
			if m["switchboard_notified_groups_total"] > groups {
				return m["switchboard_notify_transactions_total"] > notes
			}
			if time.Now().After(deadline) {
				t.Fatalf("event %s was not announced within 5 s", id)
			}
		}
	}
	quiet := func(on []*sseClient) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); publish(on); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("every commit of the sequencer still sends a NOTIFY after 15 s")
			}
		}
	}
	quiet(streams)
	fed := func(s *testServer) float64 { return metrics(t, s.URL)["switchboard_feed_notifications_total"] }
	before := []float64{fed(followers[0]), fed(followers[1])}
	const n = 20
	for range n {
		if publish(streams) {
			t.Fatal("a commit sent a NOTIFY while every follower has a feed")
		}
	}
	for i, f := range followers {
		if got := fed(f) - before[i]; got < n {
			t.Errorf("follower %d took %v announcements from its feed for %d events", i, got, n)
		}
	}

	// A follower without a stream lets the sequencer gather its feed
	// (peer.Pace) and still takes every announcement; once it has a
	// stream again, its feed goes at once.
	const pace = "switchboard_feed_pace_seconds"
	waitMetric(t, followers[0].URL, pace, 0)
	streams[0].Close()
	waitMetric(t, followers[0].URL, pace, 0.05)
	taken := fed(followers[0])
	for range n {
		publish(streams[1:])
	}
	for deadline := time.Now().Add(5 * time.Second); fed(followers[0])-taken < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("an idle follower took %v announcements from its feed for %d events", fed(followers[0])-taken, n)
		}
	}
	streams[0] = openSSE(t, followers[0].URL+"/stream?event=news", "")
	streams[0].Expect(t, "ready")
	waitMetric(t, followers[0].URL, pace, 0)
	publish(streams)

	servers[seq].Stop(t)
	next := waitSequencer(t, db, followers)
	seqURL = followers[next].URL
	other := followers[1-next]
	quiet(streams[1-next : 2-next])
	taken = fed(other)
	for range n {
		if publish(streams) {
			t.Fatal("a commit of the new sequencer sent a NOTIFY while the other instance has a feed")
		}
	}
	if got := fed(other) - taken; got < n {
		t.Errorf("the new sequencer's follower took %v announcements from its feed for %d events", got, n)
	}
}
