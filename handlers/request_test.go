package handlers

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// FuzzQuery checks that checkQuery lets through exactly the query strings
// that url.ParseQuery parses whole, and refuses the others with
// INVALID_PARAMETER before the handler runs; and that GET /stream's
// subscriptions (streamSubs) of a query it lets through are its record,
// event, presence and listen values, each kind in the query's order, or
// an error when one of those is empty.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{"", "path=a", "path=pos;x", "path=pos%zz", "a=1&b=2", "%", "=", "&&", "a=%2", "path=a&x=%",
		"p%zz=1", "path=a" + strings.Repeat("&x=1", 10000), "record=a%2Fb&event=*",
		"event=b&record=a&event=c+d&rec%6Frd=e", "record=&event=x", "presence", "listen=jobs%2F*&presence=%2A"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		reached := false
		h := checkQuery(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
		r := httptest.NewRequest("GET", "/records/x", nil)
		r.URL.RawQuery = raw
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		_, err := url.ParseQuery(raw)
		if reached != (err == nil) {
			t.Fatalf("query %q: reached the handler %v, ParseQuery error %v", raw, reached, err)
		}
		if !reached && (w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"INVALID_PARAMETER"`)) {
			t.Fatalf("query %q: %d %s", raw, w.Code, w.Body)
		}
		if !reached {
			return
		}
		q, _ := url.ParseQuery(raw)
		subs, err := streamSubs(raw)
		kinds := map[string]func(api.Subscription) string{
			"record":   func(x api.Subscription) string { return x.Record },
			"event":    func(x api.Subscription) string { return x.Event },
			"presence": func(x api.Subscription) string { return x.Presence },
			"listen":   func(x api.Subscription) string { return x.Listen },
		}
		empty := false
		for kind := range kinds {
			empty = empty || slices.Contains(q[kind], "")
		}
		if empty != (err != nil) {
			t.Fatalf("query %q: streamSubs error %v, want one exactly when a subscription is empty", raw, err)
		}
		if err != nil {
			return
		}
		for kind, of := range kinds {
			var got []string
			for _, x := range subs {
				if v := of(x); v != "" {
					got = append(got, v)
				}
			}
			if !slices.Equal(got, q[kind]) {
				t.Fatalf("query %q: %s subscriptions %q, want %q", raw, kind, got, q[kind])
			}
		}
	})
}

func TestConditions(t *testing.T) {
	tests := []struct {
		ifMatch, ifNoneMatch string
		want                 api.Cond
		bad                  string // the header at fault
	}{
		{"", "", api.Cond{}, ""},
		{`"3"`, "", api.Cond{IfMatch: 3}, ""},
		{`3`, "", api.Cond{IfMatch: 3}, ""},
		{` "3" `, "", api.Cond{IfMatch: 3}, ""},
		{`*`, "", api.Cond{IfExists: true}, ""},
		{`W/"3"`, "", api.Cond{IfMatch: -1}, ""}, // strong comparison
		{`"0"`, "", api.Cond{IfMatch: -1}, ""},
		{`"abc"`, "", api.Cond{IfMatch: -1}, ""},
		{`""`, "", api.Cond{IfMatch: -1}, ""},
		{"", `*`, api.Cond{IfNoneMatch: true}, ""},
		{"", `"4"`, api.Cond{IfNotVersion: 4}, ""},
		{"", `W/"4"`, api.Cond{IfNotVersion: 4}, ""}, // weak comparison
		{"", `"abc"`, api.Cond{}, ""},
		{`"3"`, `"4"`, api.Cond{IfMatch: 3, IfNotVersion: 4}, ""},
		{`abc`, "", api.Cond{}, "If-Match"},
		{`"3`, "", api.Cond{}, "If-Match"},
		{`W/3`, "", api.Cond{}, "If-Match"},
		{`"1", "2"`, "", api.Cond{}, "If-Match"},
		{`-1`, "", api.Cond{}, "If-Match"},
		{`0`, "", api.Cond{}, "If-Match"},
		{`**`, "", api.Cond{}, "If-Match"},
		{`"a b"`, "", api.Cond{}, "If-Match"},
		{"", `x`, api.Cond{}, "If-None-Match"},
		{"", `*, "1"`, api.Cond{}, "If-None-Match"},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.ifMatch != "" {
			h.Set("If-Match", tt.ifMatch)
		}
		if tt.ifNoneMatch != "" {
			h.Set("If-None-Match", tt.ifNoneMatch)
		}
		got, err := conditions(h)
		var e *api.Error
		switch {
		case tt.bad == "" && (err != nil || got != tt.want):
			t.Errorf("If-Match %q If-None-Match %q = %+v, %v; want %+v", tt.ifMatch, tt.ifNoneMatch, got, err, tt.want)
		case tt.bad != "" && (!api.IsCode(err, api.CodeInvalidParameter) || !errors.As(err, &e) || e.Fields["parameter"] != tt.bad):
			t.Errorf("If-Match %q If-None-Match %q: %v, want INVALID_PARAMETER for %s", tt.ifMatch, tt.ifNoneMatch, err, tt.bad)
		}
	}
	// Two header lines are a list, as RFC 9110 reads them.
	h := http.Header{"If-Match": {`"1"`, `"2"`}}
	if _, err := conditions(h); !api.IsCode(err, api.CodeInvalidParameter) {
		t.Errorf("two If-Match lines: %v", err)
	}
}

// TestReadJSONShape: a body of the wrong shape is INVALID_JSON whose
// detail names the member and the JSON expected, in JSON's terms: never a
// Go type name.
func TestReadJSONShape(t *testing.T) {
	type op struct {
		Op      string `json:"op"`
		IfMatch int64  `json:"ifMatch"`
	}
	for _, c := range []struct {
		body string
		v    any
		want string
	}{
		{`[1]`, &map[string]any{}, `the body must be an object, not an array`},
		{`"x"`, &struct{ Ops []op }{}, `the body must be an object, not a string`},
		{`{"ops":"x"}`, &struct {
			Ops []op `json:"ops"`
		}{}, `"ops" must be an array, not a string`},
		{`{"ops":[{"op":1}]}`, &struct {
			Ops []op `json:"ops"`
		}{}, `"ops.op" must be a string, not a number`},
		{`{"ops":[{"ifMatch":1.5}]}`, &struct {
			Ops []op `json:"ops"`
		}{}, `"ops.ifMatch" must be a whole number, not the number 1.5`},
		{`{"record":true}`, &api.Subscription{}, `"record" must be a string, not a boolean`},
	} {
		r := httptest.NewRequest("POST", "/x", strings.NewReader(c.body))
		_, err := readJSON(r, c.v)
		var e *api.Error
		if !errors.As(err, &e) || e.Code != api.CodeInvalidJSON || !strings.Contains(e.Detail, c.want) ||
			strings.Contains(e.Detail, "Go ") || strings.Contains(e.Detail, "json:") || strings.Contains(e.Detail, "handlers.") {
			t.Errorf("readJSON(%s) = %v; want INVALID_JSON saying %s, in JSON's terms", c.body, err, c.want)
		}
	}
}
