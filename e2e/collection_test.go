package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Live collections (record=PREFIX/*, record=*) through real servers.

// putBatch writes records with POST /batch, at most 1,000 ops at a time.
func putBatch(t testing.TB, base string, names []string, data func(name string) string) {
	t.Helper()
	for len(names) > 0 {
		n := min(len(names), 500)
		ops := make([]string, n)
		for i, name := range names[:n] {
			ops[i] = fmt.Sprintf(`{"op":"put","name":%q,"data":%s}`, name, data(name))
		}
		st, body, err := tryDo(http.MethodPost, base+"/batch", "application/json", `{"ops":[`+strings.Join(ops, ",")+`]}`)
		if err != nil || st != http.StatusOK {
			t.Fatalf("POST /batch: %d %.300s %v", st, body, err)
		}
		names = names[n:]
	}
}

// collName is the i-th record of a collection: names sort as numbers do.
func collName(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }

// quickClient answers requests that must not open a stream: one that
// does fails the test soon instead of hanging it.
var quickClient = &http.Client{Timeout: 10 * time.Second}

// collGetStream sends GET target with Accept: text/event-stream and returns an
// answer that is not a stream.
func collGetStream(t *testing.T, base, target string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+target, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := quickClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v (an open stream where none was due?)", target, err)
	}
	return resp.StatusCode, resp.Header, b
}

// expectProblem checks a problem+json answer's status and code.
func expectProblem(t *testing.T, what string, st int, h http.Header, body []byte, status int, code string) {
	t.Helper()
	var p struct{ Code string }
	if st != status || json.Unmarshal(body, &p) != nil || p.Code != code || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("%s: %d %s %.300s, want %d %s", what, st, h.Get("Content-Type"), body, status, code)
	}
}

// TestCollectionTenThousand: a collection of 10,000 records, created with
// POST /batch, is delivered in full through a real socket: the ready
// frame, 10,000 snapshots in name order with their data, then synced with
// count 10000 and the start's resume id; then a change. Frames match
// their schemas in openapi.yaml.
func TestCollectionTenThousand(t *testing.T) {
	srv := startServer(t, nil)
	const n = 10000
	names := make([]string, n)
	for i := range names {
		names[i] = collName("big/", i)
	}
	putBatch(t, srv.URL, names, func(name string) string { return fmt.Sprintf(`{"n":%q}`, name) })
	put(t, srv.URL, "big", `"outside"`)
	put(t, srv.URL, "bigger/0", `"outside"`)

	target := "/stream?record=big/*"
	c := openSSE(t, srv.URL+target, "")
	checkResponse(t, "GET", target, c.Response().StatusCode, c.Response().Header, nil)
	ready := c.Expect(t, "ready")
	checkSchema(t, "ReadyFrame", []byte(ready.Data))
	if ready.ID != "" {
		t.Fatalf("the ready frame has id %q, but snapshots follow", ready.ID)
	}
	for i, want := range names {
		f := c.Expect(t, "snapshot")
		var m struct {
			Name    string
			Version int
			Data    struct{ N string }
		}
		if err := json.Unmarshal([]byte(f.Data), &m); err != nil || m.Name != want || m.Data.N != want || m.Version != 1 || f.ID != "" {
			t.Fatalf("snapshot %d: %s (id %q), want %s at version 1", i, f.Data, f.ID, want)
		}
		if i%2500 == 0 {
			checkSchema(t, "SnapshotFrame", []byte(f.Data))
		}
	}
	synced := c.Expect(t, "synced")
	checkSchema(t, "SyncedFrame", []byte(synced.Data))
	if !jsonEqual([]byte(synced.Data), []byte(`{"record":"big/*","count":10000}`)) || synced.ID == "" {
		t.Fatalf("synced: %s (id %q)", synced.Data, synced.ID)
	}
	put(t, srv.URL, "bigger/1", `"outside"`)
	put(t, srv.URL, names[n-1], `{"n":"changed"}`)
	expectRecord(t, c, names[n-1], 2, `{"n":"changed"}`)
}

// TestCollectionLimitHTTP: with MAX_COLLECTION_RECORDS=100, a collection
// of exactly 100 records streams; one of 101 is refused on GET /stream
// with 413 PAYLOAD_TOO_LARGE and nothing of a stream, and added to an open
// stream it gets a denied frame (PAYLOAD_TOO_LARGE) and no snapshot while
// the stream goes on; record=* counts every record.
func TestCollectionLimitHTTP(t *testing.T) {
	srv := startServer(t, map[string]string{"MAX_COLLECTION_RECORDS": "100"})
	var small, large []string
	for i := range 101 {
		large = append(large, collName("large/", i))
		if i < 100 {
			small = append(small, collName("small/", i))
		}
	}
	putBatch(t, srv.URL, append(small, large...), func(string) string { return `1` })

	for _, target := range []string{"/stream?record=large/*", "/stream?record=small/*&record=large/*", "/stream?record=*"} {
		st, h, body := collGetStream(t, srv.URL, target)
		expectProblem(t, "GET "+target, st, h, body, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
		checkResponse(t, "GET", target, st, h, body)
		if strings.Contains(string(body), "event:") || h.Get("Content-Type") == "text/event-stream" {
			t.Fatalf("GET %s: part of a stream was sent: %s", target, body)
		}
	}

	c := openSSE(t, srv.URL+"/stream?record=small/*", "")
	stream := c.Expect(t, "ready").Decode(t)["stream"].(string)
	for range 100 {
		c.Expect(t, "snapshot")
	}
	if m := c.Expect(t, "synced").Decode(t); m["count"] != 100.0 {
		t.Fatalf("synced: %v", m)
	}
	addSubscription(t, srv.URL, stream, `{"record":"large/*"}`)
	f := c.Expect(t, "denied")
	checkSchema(t, "DeniedFrame", []byte(f.Data))
	if !jsonEqual([]byte(f.Data), []byte(`{"subscription":{"record":"large/*"},"code":"PAYLOAD_TOO_LARGE"}`)) {
		t.Fatalf("denied: %s", f.Data)
	}
	put(t, srv.URL, large[0], `2`)
	put(t, srv.URL, small[0], `2`)
	expectRecord(t, c, small[0], 2, `2`)
}

// TestCollectionBadNamesHTTP: malformed collections and wildcards are 400
// INVALID_NAME, on GET /stream and on POST /stream/{id}/subscriptions,
// and change nothing: the open stream gets no frame.
func TestCollectionBadNamesHTTP(t *testing.T) {
	srv := startServer(t, nil)
	c := openSSE(t, srv.URL+"/stream?record=*", "")
	stream := c.Expect(t, "ready").Decode(t)["stream"].(string)
	c.Expect(t, "synced")
	for _, q := range []string{"record=*x", "record=a/*/b", "record=/*", "record=**", "record=a/**", "event=**", "event=*x", "event=a/*/b"} {
		kind, name, _ := strings.Cut(q, "=")
		target := "/stream?" + kind + "=" + url.QueryEscape(name)
		st, h, body := collGetStream(t, srv.URL, target)
		expectProblem(t, "GET "+target, st, h, body, http.StatusBadRequest, "INVALID_NAME")
		checkResponse(t, "GET", target, st, h, body)
		sub := fmt.Sprintf(`{%q:%q}`, kind, name)
		st, h, body = do(t, http.MethodPost, srv.URL+"/stream/"+stream+"/subscriptions", "application/json", sub)
		expectProblem(t, "POST "+sub, st, h, body, http.StatusBadRequest, "INVALID_NAME")
	}
	put(t, srv.URL, "probe", `1`)
	expectRecord(t, c, "probe", 1, `1`)
	if f, ok := c.TryNext(200 * time.Millisecond); ok {
		t.Fatalf("unexpected %s %s", f.Event, f.Data)
	}
	if st, _, body := do(t, http.MethodGet, srv.URL+"/records?prefix=", "", ""); st != 200 || strings.Count(string(body), `"name"`) != 1 {
		t.Fatalf("records after the bad requests: %d %s", st, body)
	}
}

// collView is a client's copy of a collection, built from its frames
// alone; it fails the test on a frame out of place: a change inside a
// snapshot or outside the prefix, a version that is not the next one of a
// record the client has, a delete of a record it does not have.
type collView struct {
	prefix   string
	records  map[string]collRecord
	snapping map[string]bool // names snapshotted since ready; nil once synced
	synced   int
}

type collRecord struct {
	version int64
	data    string
}

func newCollView(prefix string) *collView {
	return &collView{prefix: prefix, records: map[string]collRecord{}}
}

func (v *collView) apply(t testing.TB, f frame) {
	t.Helper()
	var d struct {
		Name    string
		Version int64
		Data    json.RawMessage
		Count   int
	}
	if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
		t.Fatalf("%s frame %q: %v", f.Event, f.Data, err)
	}
	if f.Event != "ready" && f.Event != "synced" && !strings.HasPrefix(d.Name, v.prefix) {
		t.Fatalf("%s frame of %q, outside %q", f.Event, d.Name, v.prefix)
	}
	switch f.Event {
	case "ready":
		v.snapping = map[string]bool{}
	case "snapshot":
		if v.snapping == nil || v.snapping[d.Name] {
			t.Fatalf("snapshot of %s after synced, or twice", d.Name)
		}
		v.snapping[d.Name] = true
		v.records[d.Name] = collRecord{d.Version, string(d.Data)}
	case "synced":
		if v.snapping == nil || d.Count != len(v.snapping) {
			t.Fatalf("synced %s after %d snapshots", f.Data, len(v.snapping))
		}
		v.snapping = nil
		v.synced++
	case "record", "delete":
		if v.snapping != nil {
			t.Fatalf("%s frame inside the snapshot: %s", f.Event, f.Data)
		}
		old, ok := v.records[d.Name]
		if ok && d.Version != old.version+1 {
			t.Fatalf("%s %s at version %d after %d: a gap or a duplicate", f.Event, d.Name, d.Version, old.version)
		}
		if f.Event == "delete" {
			if !ok {
				t.Fatalf("delete of %s, which the client does not have", d.Name)
			}
			delete(v.records, d.Name)
		} else {
			v.records[d.Name] = collRecord{d.Version, string(d.Data)}
		}
	default:
		t.Fatalf("unexpected %s frame: %s", f.Event, f.Data)
	}
}

// storeCollection reads every record under prefix through base's API.
func storeCollection(t testing.TB, base, prefix string) map[string]collRecord {
	t.Helper()
	out := map[string]collRecord{}
	for after := ""; ; {
		st, _, body := do(t, http.MethodGet, base+"/records?limit=1000&prefix="+url.QueryEscape(prefix)+"&after="+url.QueryEscape(after), "", "")
		var page struct {
			Records []struct{ Name string }
			Next    *string
		}
		if st != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("list %s: %d %.300s", prefix, st, body)
		}
		for _, r := range page.Records {
			st, _, body := do(t, http.MethodGet, base+"/records/"+r.Name, "", "")
			var rec struct {
				Version int64
				Data    json.RawMessage
			}
			if st == http.StatusNotFound {
				continue // deleted since the listing: writes have stopped, so only by the caller
			}
			if st != http.StatusOK || json.Unmarshal(body, &rec) != nil {
				t.Fatalf("GET %s: %d %s", r.Name, st, body)
			}
			out[r.Name] = collRecord{rec.Version, string(rec.Data)}
		}
		if page.Next == nil {
			return out
		}
		after = *page.Next
	}
}

// sameCollection reports how a client's view differs from the store.
func sameCollection(view, store map[string]collRecord) string {
	if len(view) != len(store) {
		return fmt.Sprintf("the client has %d records, the store %d", len(view), len(store))
	}
	for name, s := range store {
		c, ok := view[name]
		if !ok || c.version != s.version || !jsonEqual([]byte(c.data), []byte(s.data)) {
			return fmt.Sprintf("%s: the client has %+v, the store %+v", name, c, s)
		}
	}
	return ""
}

// catchUp reads frames into v until it equals the store under base (which
// writes no more), then checks that nothing else comes.
func catchUp(t testing.TB, c *sseClient, v *collView, base string) {
	t.Helper()
	want := storeCollection(t, base, v.prefix)
	deadline := time.Now().Add(30 * time.Second)
	for v.snapping != nil || sameCollection(v.records, want) != "" {
		f, ok := c.TryNext(time.Until(deadline))
		if !ok {
			t.Fatalf("the client's view never equals the store: %s", sameCollection(v.records, want))
		}
		v.apply(t, f)
	}
	if f, ok := c.TryNext(300 * time.Millisecond); ok {
		t.Fatalf("after the view equals the store: %s %s", f.Event, f.Data)
	}
}

// collWriters runs w HTTP writers on base until stop closes: each creates,
// replaces, path-writes and deletes records under prefix and, one op in
// four, outside it. It returns a channel closed once they are done.
func collWriters(t testing.TB, base, prefix string, w int, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	left := make(chan struct{}, w)
	for k := range w {
		go func() {
			defer func() { left <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := prefix
				if i%4 == 3 {
					p = "elsewhere/"
				}
				name := fmt.Sprintf("%s%05d", p, (i*7+k*131)%400)
				var st int
				var err error
				switch i % 5 {
				case 0:
					st, _, err = tryDo(http.MethodDelete, base+"/records/"+name, "", "")
				case 1:
					st, _, err = tryDo(http.MethodPut, base+"/records/"+name+"?path=w"+strconv.Itoa(k), "application/json", strconv.Itoa(i))
				default:
					st, _, err = tryDo(http.MethodPut, base+"/records/"+name, "application/json", fmt.Sprintf(`{"w":%d,"i":%d}`, k, i))
				}
				if err != nil || (st/100 != 2 && st != http.StatusNotFound) {
					t.Errorf("write %s: %d %v", name, st, err)
					return
				}
			}
		}()
	}
	go func() {
		for range w {
			<-left
		}
		close(done)
	}()
	return done
}
