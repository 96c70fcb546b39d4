package handlers

import (
	"errors"
	"slices"
	"testing"
	"unsafe"

	"github.com/switchboard-dev/switchboard/api"
)

// TestStreamSubsCopyNames: the names of a stream's subscriptions do not
// point into the request's query, which a stream would otherwise keep
// whole (with whatever else the request line holds) while it is open.
func TestStreamSubsCopyNames(t *testing.T) {
	raw := "access_token=" + string(make([]byte, 512)) + "&event=chat&record=doc&presence=*&listen=jobs/*"
	start := uintptr(unsafe.Pointer(unsafe.StringData(raw)))
	end := start + uintptr(len(raw))
	subs, err := streamSubs(raw)
	if err != nil || len(subs) != 4 {
		t.Fatalf("%d subscriptions (%v), want 4", len(subs), err)
	}
	for _, x := range subs {
		for _, v := range []string{x.Record, x.Event, x.Presence, x.Listen} {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(v))); v != "" && p >= start && p < end {
				t.Errorf("subscription %+v points into the query", x)
			}
		}
	}
}

// TestStreamSubs: the subscriptions of GET /stream's query come in the
// query's order, unescaped, other parameters aside; one that names
// nothing is refused as its missing name or user id would be.
func TestStreamSubs(t *testing.T) {
	subs, err := streamSubs("event=a&lastEventId=x&record=b%2Fc&path=x&listen=jobs%2F*&presence=*&record=d")
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Subscription{{Event: "a"}, {Record: "b/c"}, {Listen: "jobs/*"}, {Presence: "*"}, {Record: "d"}}
	if !slices.Equal(subs, want) {
		t.Fatalf("subscriptions %+v, want %+v", subs, want)
	}
	for _, c := range []struct {
		query     string
		code      api.Code
		parameter string
	}{
		{"record=", api.CodeInvalidName, ""},
		{"event=a&event", api.CodeInvalidName, ""},
		{"listen=", api.CodeInvalidName, ""},
		{"presence=", api.CodeInvalidParameter, "presence"},
	} {
		_, err := streamSubs(c.query)
		var e *api.Error
		if !errors.As(err, &e) || e.Code != c.code || e.Fields["parameter"] != any(c.parameter) && c.parameter != "" {
			t.Errorf("%s: %v, want %s (parameter %q)", c.query, err, c.code, c.parameter)
		}
	}
}
