package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// pgWriter writes records mix/0..mix/5 (whole, by path, by merge patch,
// deletes) and publishes events ev/0/*, ev/1/* and ev/x on base until stop.
func pgWriter(base string, w int, stop <-chan struct{}, ops *atomic.Int64) error {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		name := "/records/mix/" + strconv.Itoa(rand.IntN(6))
		var method, url, ct, body string
		switch r := rand.IntN(20); {
		case r < 6:
			method, url, ct, body = http.MethodPut, name, "application/json", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
		case r < 10:
			method, url, ct, body = http.MethodPut, name+"?path=w"+strconv.Itoa(w), "application/json", strconv.Itoa(i)
		case r < 12:
			method, url, ct, body = http.MethodPatch, name, "application/merge-patch+json", fmt.Sprintf(`{"m":%d}`, i)
		case r < 13:
			method, url = http.MethodDelete, name
		default:
			ev := []string{"ev/0/w", "ev/1/w", "ev/x"}[rand.IntN(3)]
			method, url, ct, body = http.MethodPost, "/events/"+ev+strconv.Itoa(w), "application/json", strconv.Itoa(i)
			if strings.HasPrefix(ev, "ev/x") {
				url = "/events/ev/x"
			}
		}
		st, b, err := tryDo(method, base+url, ct, body)
		if err != nil {
			return err
		}
		if st >= 300 && (st != http.StatusNotFound || method == http.MethodPut || method == http.MethodPost) {
			return fmt.Errorf("%s %s: %d %s", method, url, st, b)
		}
		ops.Add(1)
	}
}

// TestPGResumeAcrossInstances: 8 writers on A, 4 streams on B for 10 s;
// the streams reconnect again and again, at random to A or B, with their
// Last-Event-ID. Every stream delivers exactly the log's changes for its
// subscriptions, in log order, each record's versions one after the other.
func TestPGResumeAcrossInstances(t *testing.T) {
	url, srv := pgServers(t, 2, nil)
	a, b := srv[0].URL, srv[1].URL
	trackers := make([]*testkit.Tracker, 4)
	for i := range trackers {
		recs := []string{"mix/" + strconv.Itoa(i), "mix/" + strconv.Itoa((i+1)%6), "mix/" + strconv.Itoa((i+3)%6)}
		events := []string{"ev/" + strconv.Itoa(i%2) + "/*"}
		if i == 3 {
			events = append(events, "ev/x")
		}
		trackers[i] = testkit.NewTracker("stream "+strconv.Itoa(i), recs, events)
	}
	firsts := make([]*sseClient, len(trackers))
	for i, k := range trackers {
		firsts[i] = openTracker(t, k, b)
	}

	stop, abort := make(chan struct{}), make(chan struct{})
	var ops atomic.Int64
	var writers, readers sync.WaitGroup
	for w := range 8 {
		writers.Go(func() {
			if err := pgWriter(a, w, stop, &ops); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	for i, k := range trackers {
		readers.Go(func() { churn(k, firsts[i], []string{a, b}, abort) })
	}
	time.Sleep(10 * time.Second)
	close(stop)
	writers.Wait()

	log := compareTrackers(t, url, trackers, &readers, abort)
	t.Logf("%d writes and events on A, %d log entries", ops.Load(), len(log))
	if ops.Load() < 100 {
		t.Errorf("only %d writes in 10 s", ops.Load())
	}
}

// waitOrAbort waits for wg; after timeout it closes abort and waits again.
// compareTrackers reads the log, waits for the readers to catch up with it
// (or aborts them), and compares every stream with the log. It returns
// the log.
func compareTrackers(t testing.TB, url string, trackers []*testkit.Tracker, readers *sync.WaitGroup, abort chan struct{}) []testkit.LogEntry {
	t.Helper()
	log := testkit.ReadLog(t, url, 0)
	ix := testkit.NewIndex(log)
	wants := make([][]testkit.LogEntry, len(trackers))
	for i, k := range trackers {
		wants[i] = k.Expect(ix)
	}
	waitOrAbort(t, readers, abort, 30*time.Second)
	for i, k := range trackers {
		if err := k.Compare(wants[i]); err != nil {
			t.Error(err)
		}
		changes, conns := k.Delivered()
		t.Logf("%s: %d changes over %d connections", k.Name(), changes, conns)
	}
	return log
}

func waitOrAbort(t testing.TB, wg *sync.WaitGroup, abort chan struct{}, timeout time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Errorf("streams did not catch up with the log in %v", timeout)
		close(abort)
		<-done
	}
}

// TestPGOutage stops PostgreSQL for 5 s under streams open on two
// instances and writers on both. /readyz answers 503 during the outage and
// 200 after; two streams stay open, two are cut during the outage and
// resume on the other instance; every stream ends up with exactly the
// log's changes, including the writes made after recovery.
func TestPGOutage(t *testing.T) {
	pg := pgtest.Current(t)
	url, srv := pgServers(t, 2, nil)
	a, b := srv[0].URL, srv[1].URL
	records, events := []string{"out/0", "out/1", "out/2"}, []string{"note/*"}
	trackers := []*testkit.Tracker{
		testkit.NewTracker("held on A", records, events),
		testkit.NewTracker("held on B", records, events),
		testkit.NewTracker("cut on A", records, events),
		testkit.NewTracker("cut on B", records, events),
	}
	homes := [][]string{{a, b}, {b, a}, {a, b}, {b, a}}
	firsts := make([]*sseClient, len(trackers))
	for i, k := range trackers {
		firsts[i] = openTracker(t, k, homes[i][0])
	}

	stop, abort, cut := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var writers, readers sync.WaitGroup
	var mu sync.Mutex
	var acks []acked // successful writes, with when they were answered
	for w, base := range []string{a, b} {
		writers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				x := acked{name: records[i%3]}
				var st int
				var body []byte
				if i%4 == 3 {
					x.name = "note/w" + strconv.Itoa(w)
					st, body, _ = tryDo(http.MethodPost, base+"/events/"+x.name, "application/json", strconv.Itoa(i))
					var r struct{ ID string }
					json.Unmarshal(body, &r)
					x.seq, _ = strconv.ParseInt(r.ID, 10, 64)
				} else {
					st, body, _ = tryDo(http.MethodPut, base+"/records/"+x.name+"?path=w"+strconv.Itoa(w), "application/json", strconv.Itoa(i))
					var r struct{ Version int64 }
					json.Unmarshal(body, &r)
					x.version = r.Version
				}
				if st/100 == 2 {
					x.at = time.Now()
					mu.Lock()
					acks = append(acks, x)
					mu.Unlock()
				}
			}
		})
	}
	for i, k := range trackers {
		c := cut
		if i < 2 {
			c = nil
		}
		readers.Go(func() { follow(k, firsts[i], homes[i], c, abort) })
	}

	time.Sleep(time.Second)
	restarted := false
	t.Cleanup(func() { // before the servers stop and the database is dropped
		if !restarted {
			pg.Restart()
		}
	})
	if err := pg.Stop(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	stopped := time.Now()
	close(cut)
	for _, base := range []string{a, b} {
		waitReadyz(t, base, http.StatusServiceUnavailable, 5*time.Second)
	}
	// A write while the database is down is refused as UNAVAILABLE: retry.
	st, _, body := do(t, http.MethodPut, a+"/records/outage/probe", "application/json", `1`)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(body), `"UNAVAILABLE"`) {
		t.Errorf("PUT during the outage: %d %s, want 503 UNAVAILABLE", st, body)
	}
	time.Sleep(time.Until(stopped.Add(5 * time.Second)))
	for _, base := range []string{a, b} {
		if st := readyzStatus(base); st != http.StatusServiceUnavailable {
			t.Errorf("%s/readyz answered %d at the end of the outage", base, st)
		}
	}
	if err := pg.Restart(); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	restarted = true
	for _, base := range []string{a, b} {
		waitReadyz(t, base, http.StatusOK, 30*time.Second)
	}
	recovered := time.Now()
	t.Logf("ready again %v after the restart", recovered.Sub(stopped)-5*time.Second)
	time.Sleep(time.Second)
	close(stop)
	writers.Wait()

	log := compareTrackers(t, url, trackers, &readers, abort)
	for _, k := range trackers[2:] {
		if _, conns := k.Delivered(); conns < 2 {
			t.Errorf("%s: never resumed", k.Name())
		}
	}
	checkAcked(t, log, acks, recovered)
}

// acked is a write that was answered 2xx: a record version or an event.
type acked struct {
	name    string
	version int64 // records
	seq     int64 // events
	at      time.Time
}

// checkAcked checks that every acknowledged write is in the log, and that
// writes were acknowledged after recovery.
func checkAcked(t testing.TB, log []testkit.LogEntry, acks []acked, recovered time.Time) {
	t.Helper()
	type key struct {
		name    string
		version int64
	}
	inLog := make(map[key]bool)
	for _, e := range log {
		if e.Kind == "event" {
			inLog[key{e.Name, -e.Seq}] = true
		} else {
			inLog[key{e.Name, e.Version}] = true
		}
	}
	after := 0
	for _, x := range acks {
		k := key{x.name, x.version}
		if x.version == 0 {
			k.version = -x.seq
		}
		if !inLog[k] {
			t.Errorf("acknowledged write %+v is not in the log", x)
		}
		if x.at.After(recovered) {
			after++
		}
	}
	if after < 10 {
		t.Errorf("only %d writes acknowledged after recovery", after)
	}
	t.Logf("%d writes acknowledged, %d after recovery", len(acks), after)
}
