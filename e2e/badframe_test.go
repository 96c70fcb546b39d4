package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
)

// storeRaw writes records into an embedded store's directory as they are,
// past every check of the server, as an older version may have written
// them; the server is not running yet.
func storeRaw(t *testing.T, dir string, records map[string]string) {
	t.Helper()
	store, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for name, data := range records {
		_, err := store.Write(context.Background(), []api.Write{{
			Kind: api.KindSet, Name: name,
			Apply: func(json.RawMessage, bool) (json.RawMessage, error) { return json.RawMessage(data), nil },
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// expectEnd waits until the server closes the stream.
func expectEnd(t *testing.T, c *sseClient) {
	t.Helper()
	for {
		select {
		case f, ok := <-c.Frames():
			if !ok {
				return
			}
			if f.Event == "snapshot" {
				t.Fatalf("got a snapshot frame: %.80s", f.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the stream is still open after 5s")
		}
	}
}

// TestDeepRecordEndsStream: a stored record too deep for encoding/json
// ends the streams that ask for its snapshot (at the start, or added to an
// open stream), and only them: the connection closes, streams_open goes
// back down, and the server goes on. Such a stream used to keep its
// socket and its place in the hub forever, and an added subscription
// crashed the server.
func TestDeepRecordEndsStream(t *testing.T) {
	dir := t.TempDir()
	storeRaw(t, dir, map[string]string{"deep": strings.Repeat("[", 10001) + strings.Repeat("]", 10001)})
	srv := startServer(t, map[string]string{"DATA_DIR": dir})

	for range 3 {
		expectEnd(t, openSSE(t, srv.URL+"/stream?record=deep&event=x", ""))
	}
	waitMetric(t, srv.URL, "switchboard_streams_open", 0)

	c := openSSE(t, srv.URL+"/stream?event=x", "")
	id := c.Expect(t, "ready").Decode(t)["stream"].(string)
	st, _, b := do(t, http.MethodPost, srv.URL+"/stream/"+id+"/subscriptions", "application/json", `{"record":"deep"}`)
	if st != http.StatusNoContent {
		t.Fatalf("add: %d %s", st, b)
	}
	expectEnd(t, c)
	waitMetric(t, srv.URL, "switchboard_streams_open", 0)

	put(t, srv.URL, "fine", `1`)
	c = openSSE(t, srv.URL+"/stream?record=fine", "")
	c.Expect(t, "ready")
	c.Expect(t, "snapshot")
}

// TestOversizedRecordIsDenied: a stored record larger than a stream's
// buffer (stored before MAX_RECORD_BYTES, or under a larger one) is never
// sent: its subscription gets a PAYLOAD_TOO_LARGE denied frame, and the
// stream goes on with the others.
func TestOversizedRecordIsDenied(t *testing.T) {
	dir := t.TempDir()
	storeRaw(t, dir, map[string]string{"big": `"` + strings.Repeat("x", 20000) + `"`, "small": `1`})
	srv := startServer(t, map[string]string{
		"DATA_DIR": dir, "MAX_RECORD_BYTES": "1024", "MAX_BODY_BYTES": "1024", "STREAM_BUFFER_BYTES": "10240",
	})
	c := openSSE(t, srv.URL+"/stream?record=big&record=small", "")
	c.Expect(t, "ready")
	if got := c.Expect(t, "denied").Data; got != `{"subscription":{"record":"big"},"code":"PAYLOAD_TOO_LARGE"}` {
		t.Fatalf("denied frame %s", got)
	}
	c.Expect(t, "snapshot")
	put(t, srv.URL, "small", `2`)
	if m := c.Expect(t, "record").Decode(t); m["name"] != "small" {
		t.Fatalf("record frame %v", m)
	}
	waitMetric(t, srv.URL, "switchboard_slow_disconnects_total", 0)
}
