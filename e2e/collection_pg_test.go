package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestPGCollectionCrossInstance: two instances on one database. A
// collection subscriber on B, opened while 4 writers on A create, change,
// path-write and delete records under its prefix and outside it (with 600
// records already there: a snapshot of several pages, read while the log
// moves), sees its snapshots, synced, then every later change written
// through A, none outside the prefix; its view, built from frames alone,
// equals the store at the end. A collection added through A to a stream
// that B holds gets its snapshots and synced, then changes.
func TestPGCollectionCrossInstance(t *testing.T) {
	_, srv := pgServers(t, 2, nil)
	a, b := srv[0].URL, srv[1].URL
	var names []string
	for i := range 600 {
		names = append(names, collName("fleet/", i))
	}
	putBatch(t, a, names, func(name string) string { return `{"seed":true}` })

	stop := make(chan struct{})
	done := collWriters(t, a, "fleet/", 4, stop)
	time.Sleep(200 * time.Millisecond) // the log moves
	c := openSSE(t, b+"/stream?record=fleet/*", "")
	v := newCollView("fleet/")
	// Read while the writers write, for 1.5 s at least and until the
	// snapshot is synced (a busy machine may take longer over 600 records).
	for start := time.Now(); time.Since(start) < 1500*time.Millisecond || v.synced == 0; {
		if time.Since(start) > 30*time.Second {
			t.Fatal("no synced frame in 30 s")
		}
		v.apply(t, c.Next(t, 10*time.Second))
	}
	close(stop)
	<-done
	if v.synced != 1 {
		t.Fatalf("%d synced frames, want 1", v.synced)
	}
	catchUp(t, c, v, a)

	// A collection added through A to a stream that B holds.
	dyn := openSSE(t, b+"/stream?event=none", "")
	stream := dyn.Expect(t, "ready").Decode(t)["stream"].(string)
	st, h, body := do(t, http.MethodPost, a+"/stream/"+stream+"/subscriptions", "application/json", `{"record":"fleet/*"}`)
	if st != http.StatusNoContent {
		t.Fatalf("add fleet/* through A: %d %s", st, body)
	}
	checkResponse(t, "POST", "/stream/"+stream+"/subscriptions", st, h, body)
	dv := newCollView("fleet/")
	dv.snapping = map[string]bool{} // the ready frame is read
	for dv.synced == 0 {
		dv.apply(t, dyn.Next(t, 10*time.Second))
	}
	if diff := sameCollection(dv.records, v.records); diff != "" {
		t.Fatalf("the added collection's snapshot: %s", diff)
	}
	put(t, a, "elsewhere/after", `1`)
	put(t, a, "fleet/after", `{"after":true}`)
	for _, s := range []*sseClient{c, dyn} {
		expectRecord(t, s, "fleet/after", 1, `{"after":true}`)
	}
}
