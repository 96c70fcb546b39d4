package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRecordVersions follows one record through writes: PUT is 201 when
// it creates and 200 when it replaces, every answer carries the version
// as a strong ETag, If-Match and If-None-Match hold a write to a version,
// and a refused write is 412 VERSION_CONFLICT with the current version.
func TestRecordVersions(t *testing.T) {
	srv, _ := newServer(t, options{})
	const (
		jsonCT  = "application/json"
		mergeCT = "application/merge-patch+json"
	)
	for i, s := range []struct {
		method, query, ct, body string
		headers                 []string
		status                  int
		etag                    string // after the step; for a 412, the current version's
	}{
		{"PUT", "", jsonCT, `{"a":1}`, nil, 201, `"1"`},
		{"PUT", "", jsonCT, `{"a":2}`, nil, 200, `"2"`},
		{"PUT", "", jsonCT, `{"a":3}`, []string{"If-Match", `"1"`}, 412, `"2"`},
		{"PATCH", "", mergeCT, `{"b":1}`, []string{"If-Match", `"2"`}, 200, `"3"`},
		{"PUT", "?path=c", jsonCT, `5`, []string{"If-Match", `W/"3"`}, 412, `"3"`}, // If-Match compares strongly
		{"PUT", "?path=c", jsonCT, `5`, []string{"If-Match", `*`}, 200, `"4"`},
		{"PUT", "", jsonCT, `{}`, []string{"If-None-Match", `*`}, 412, `"4"`},
		{"GET", "", "", "", nil, 200, `"4"`},
		{"GET", "?path=c", "", "", nil, 200, `"4"`},
		{"DELETE", "", "", "", []string{"If-Match", `"3"`}, 412, `"4"`},
		{"DELETE", "", "", "", []string{"If-Match", `"4"`}, 204, `"5"`},
		{"PUT", "", jsonCT, `{}`, []string{"If-Match", `*`}, 412, `"0"`},
		{"PUT", "?path=x.y", jsonCT, `1`, []string{"If-None-Match", `*`}, 201, `"6"`}, // created anew, after the delete's version
		{"PUT", "", jsonCT, `2`, []string{"If-Match", `"5"`}, 412, `"6"`},             // the delete's version never matches
	} {
		what := s.method + " " + s.query
		resp, body := send(t, s.method, srv.URL+"/records/doc"+s.query, s.ct, s.body, s.headers...)
		if s.status == http.StatusPreconditionFailed {
			p := wantProblem(t, what, resp, body, s.status, "VERSION_CONFLICT")
			if p.CurrentVersion == nil || fmt.Sprintf(`"%d"`, *p.CurrentVersion) != s.etag {
				t.Errorf("step %d, %s %v: %s, want currentVersion %s", i, what, s.headers, body, s.etag)
			}
			continue
		}
		if resp.StatusCode != s.status || resp.Header.Get("ETag") != s.etag {
			t.Errorf("step %d, %s %v: %d ETag %s %s, want %d ETag %s", i, what, s.headers, resp.StatusCode, resp.Header.Get("ETag"), body, s.status, s.etag)
		}
		if s.status == http.StatusNoContent && len(body) != 0 {
			t.Errorf("step %d, %s: 204 with a body %s", i, what, body)
		}
	}
}

// TestHeadHasNoBody: HEAD on a record answers GET's status and ETag with
// no body, written by the handler itself (not cut by net/http).
func TestHeadHasNoBody(t *testing.T) {
	srv, _ := newServer(t, options{})
	send(t, "PUT", srv.URL+"/records/doc", "application/json", `{"a":[1,2,3]}`)
	send(t, "PUT", srv.URL+"/records/doc?path=a.1", "application/json", `5`)
	for _, target := range []string{"/records/doc", "/records/doc?path=a.0"} {
		w := httptest.NewRecorder()
		srv.Config.Handler.ServeHTTP(w, httptest.NewRequest("HEAD", target, nil))
		if w.Code != http.StatusOK || w.Header().Get("ETag") != `"2"` || w.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d ETag %s, %d bytes of body", target, w.Code, w.Header().Get("ETag"), w.Body.Len())
		}
	}
	w := httptest.NewRecorder()
	srv.Config.Handler.ServeHTTP(w, httptest.NewRequest("HEAD", "/records/missing", nil))
	if w.Code != http.StatusNotFound || w.Header().Get("ETag") != "" {
		t.Errorf("HEAD /records/missing: %d ETag %q", w.Code, w.Header().Get("ETag"))
	}
}
