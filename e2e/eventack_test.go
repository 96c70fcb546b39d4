package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestEventAckWritten: with EVENT_ACK=written, publishes from many
// clients at once are answered 202 with their ids, and a subscriber
// receives every one of them exactly once, in the order of their ids; a
// record write is answered as always.
func TestEventAckWritten(t *testing.T) {
	srv := startServer(t, map[string]string{"EVENT_ACK": "written"})
	c := openSSE(t, srv.URL+"/stream?event=chat", "")
	if f := c.Next(t, 5*time.Second); f.Event != "ready" {
		t.Fatalf("first frame %+v", f)
	}

	const publishers, each = 8, 25
	var mu sync.Mutex
	var ids []int64
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				code, _, body := do(t, http.MethodPost, srv.URL+"/events/chat", "application/json", fmt.Sprintf(`"%d/%d"`, p, i))
				var got struct{ ID string }
				if code != http.StatusAccepted || json.Unmarshal(body, &got) != nil {
					t.Errorf("publish: %d %s", code, body)
					return
				}
				id, err := strconv.ParseInt(got.ID, 10, 64)
				if err != nil {
					t.Errorf("publish answered id %q", got.ID)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(ids)
	for _, want := range ids {
		f := c.Next(t, 10*time.Second)
		var ev struct{ ID string }
		if f.Event != "event" || json.Unmarshal([]byte(f.Data), &ev) != nil || ev.ID != strconv.FormatInt(want, 10) {
			t.Fatalf("got frame %+v; want the event of id %d", f, want)
		}
	}
	if f, ok := c.TryNext(200 * time.Millisecond); ok && f.Event == "event" {
		t.Fatalf("an event more than those published: %+v", f)
	}
	if code, _, body := do(t, http.MethodPut, srv.URL+"/records/doc", "application/json", `{"a":1}`); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("record write: %d %s", code, body)
	}
}
