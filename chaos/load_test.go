package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// ack is one acknowledged write: a record at a version with its data, or
// an event at its log position.
type ack struct {
	Name    string
	Version int64 // records
	Seq     int64 // events
	Data    string
}

// ledger keeps what the server acknowledged, and counts what it refused.
type ledger struct {
	mu      sync.Mutex
	acks    []ack
	batches int
	refused map[string]int // "503 UNAVAILABLE", "connection error", ...
	ops     atomic.Int64
}

func newLedger() *ledger { return &ledger{refused: map[string]int{}} }

func (l *ledger) ack(a ...ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a...)
	if len(a) > 1 {
		l.batches++
	}
	l.mu.Unlock()
	l.ops.Add(1)
}

func (l *ledger) refuse(a answer) {
	what := "no answer"
	if a.Err == nil {
		var p struct{ Code string }
		json.Unmarshal(a.Body, &p)
		what = strconv.Itoa(a.Status) + " " + p.Code
		if a.Status == http.StatusServiceUnavailable && a.Header.Get("Retry-After") != "" {
			what += " Retry-After"
		}
	}
	l.mu.Lock()
	l.refused[what]++
	l.mu.Unlock()
}

// writer is one client writing records and batches and publishing events
// until stop: single writes of k/0..k/records-1, batches of 3 writes
// (their data names the batch) and events under ev/. A write that gets
// no answer or a 5xx is tried again on the next of bases, as a client
// behind a load balancer would.
func writer(w, records int, bases []string, auth string, l *ledger, stop <-chan struct{}, pace time.Duration) {
	h := []string{"Authorization", auth}
	b := w % len(bases)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if pace > 0 {
			time.Sleep(pace)
		}
		base := bases[b]
		rec := func(n int) string { return "k/" + strconv.Itoa(n) }
		var a answer
		switch r := rand.IntN(10); {
		case r < 5:
			name, data := rec(rand.IntN(records)), fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
			if a = send(http.MethodPut, base+"/records/"+name, data, h...); a.Status/100 == 2 {
				var rec struct{ Version int64 }
				json.Unmarshal(a.Body, &rec)
				l.ack(ack{Name: name, Version: rec.Version, Data: data})
				continue
			}
		case r < 8:
			id := fmt.Sprintf("%d.%d", w, i)
			names := []string{rec(rand.IntN(records)), rec(rand.IntN(records)), rec(rand.IntN(records))}
			var ops []string
			datas := make([]string, 3)
			for j, n := range names {
				datas[j] = fmt.Sprintf(`{"b":%q,"op":%d}`, id, j)
				ops = append(ops, fmt.Sprintf(`{"op":"put","name":%q,"data":%s}`, n, datas[j]))
			}
			body := `{"ops":[` + ops[0] + "," + ops[1] + "," + ops[2] + `]}`
			if a = send(http.MethodPost, base+"/batch", body, h...); a.Status == http.StatusOK {
				var res struct{ Results []struct{ Version int64 } }
				json.Unmarshal(a.Body, &res)
				acks := make([]ack, 0, 3)
				for j, r := range res.Results {
					acks = append(acks, ack{Name: names[j], Version: r.Version, Data: datas[j]})
				}
				l.ack(acks...)
				continue
			}
		default:
			name, data := "ev/"+strconv.Itoa(w), strconv.Itoa(i)
			if a = send(http.MethodPost, base+"/events/"+name, data, h...); a.Status == http.StatusAccepted {
				var ev struct{ ID string }
				json.Unmarshal(a.Body, &ev)
				seq, _ := strconv.ParseInt(ev.ID, 10, 64)
				l.ack(ack{Name: name, Seq: seq, Data: data})
				continue
			}
		}
		l.refuse(a)
		if a.Err != nil || a.Status >= 500 {
			b = (b + 1) % len(bases)
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// verify checks the database against the ledger: every acknowledged write
// is in the log with its acknowledged version and data, every event at its
// acknowledged position, each record at its last acknowledged version or
// later, and every batch in the log whole (all 3 of its writes or none,
// acknowledged or not).
func verify(t *testing.T, db string, l *ledger) []testkit.LogEntry {
	t.Helper()
	log := testkit.ReadLog(t, db, 0)
	type key struct {
		name    string
		version int64
	}
	recs, events := map[key]string{}, map[int64]testkit.LogEntry{}
	batches := map[string]int{}
	for _, e := range log {
		if e.Kind == "event" {
			events[e.Seq] = e
			continue
		}
		recs[key{e.Name, e.Version}] = e.Data
		var d struct{ B string }
		if json.Unmarshal([]byte(e.Data), &d) == nil && d.B != "" {
			batches[d.B]++
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.acks) == 0 || len(log) == 0 {
		t.Fatalf("nothing acknowledged (refused: %v)", l.refused)
	}
	lost := 0
	for _, a := range l.acks {
		if a.Seq > 0 {
			if e, ok := events[a.Seq]; !ok || e.Name != a.Name || !jsonEqual(e.Data, a.Data) {
				lost++
				if lost <= 5 {
					t.Errorf("acknowledged event %s at %d (%s): the log has %+v", a.Name, a.Seq, a.Data, e)
				}
			}
			continue
		}
		if d, ok := recs[key{a.Name, a.Version}]; !ok || !jsonEqual(d, a.Data) {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write %s v%d %s: the log has %q", a.Name, a.Version, a.Data, d)
			}
		}
	}
	// Each record is at its last acknowledged version or later.
	current := recordVersions(t, db)
	behind := 0
	last := map[string]int64{}
	for _, a := range l.acks {
		if a.Seq == 0 {
			last[a.Name] = max(last[a.Name], a.Version)
		}
	}
	for name, v := range last {
		if current[name] < v {
			if behind++; behind <= 5 {
				t.Errorf("record %s at version %d in the database; version %d was acknowledged", name, current[name], v)
			}
		}
	}
	partial := 0
	for b, n := range batches {
		if n != 3 {
			partial++
			if partial <= 5 {
				t.Errorf("batch %s: %d of its 3 writes in the log", b, n)
			}
		}
	}
	if lost > 0 || partial > 0 || behind > 0 {
		t.Errorf("%d of %d acknowledged writes lost or changed, %d partial batches", lost, len(l.acks), partial)
	}
	t.Logf("%d acknowledged writes and events (%d batches), all in the log; %d batches in the log, all whole; refused: %v",
		len(l.acks), l.batches, len(batches), l.refused)
	return log
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// recordVersions reads every record's version straight from the database.
func recordVersions(t *testing.T, db string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT name, version FROM records`)
	if err != nil {
		t.Fatalf("read the records: %v", err)
	}
	out := map[string]int64{}
	var name string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&name, &v}, func() error { out[name] = v; return nil })
	if err != nil {
		t.Fatalf("read the records: %v", err)
	}
	return out
}
