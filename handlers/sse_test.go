package handlers

import (
	"net/url"
	"testing"
	"unsafe"
)

// TestStreamSubsCopyNames: the names of a stream's subscriptions do not
// point into the request's query, which a stream would otherwise keep
// whole (with whatever else the request line holds) while it is open.
func TestStreamSubsCopyNames(t *testing.T) {
	raw := "access_token=" + string(make([]byte, 512)) + "&event=chat&record=doc&presence=*&listen=jobs/*"
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	start := uintptr(unsafe.Pointer(unsafe.StringData(raw)))
	end := start + uintptr(len(raw))
	subs := streamSubs(q)
	if len(subs) != 4 {
		t.Fatalf("%d subscriptions, want 4", len(subs))
	}
	for _, x := range subs {
		for _, v := range []string{x.Record, x.Event, x.Presence, x.Listen} {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(v))); v != "" && p >= start && p < end {
				t.Errorf("subscription %+v points into the query", x)
			}
		}
	}
}
