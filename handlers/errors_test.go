package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// wantStatus is the status of every stable code: the public contract,
// written out a second time so that a change to errors.go's table is a
// deliberate one.
var wantStatus = map[api.Code]int{
	api.CodeInvalidName:          400,
	api.CodeInvalidPath:          400,
	api.CodeInvalidJSON:          400,
	api.CodeInvalidParameter:     400,
	api.CodeNotFound:             404,
	api.CodeMethodNotAllowed:     405,
	api.CodeVersionConflict:      412,
	api.CodePatchFailed:          409,
	api.CodePayloadTooLarge:      413,
	api.CodeUnsupportedMediaType: 415,
	api.CodeUnauthenticated:      401,
	api.CodeAuthUnavailable:      503,
	api.CodePermissionDenied:     403,
	api.CodeNoRPCProvider:        503,
	api.CodeRPCTimeout:           504,
	api.CodeRPCError:             502,
	api.CodeRateLimited:          429,
	api.CodeLimitExceeded:        429,
	api.CodeUnavailable:          503,
	api.CodeInternal:             500,
}

// TestProblemOfEveryCode: every code is answered with its status as an RFC
// 9457 problem that carries the code, the detail and the error's fields.
func TestProblemOfEveryCode(t *testing.T) {
	if len(statusOf) != len(wantStatus) {
		t.Errorf("errors.go maps %d codes, this test knows %d: add the new ones here", len(statusOf), len(wantStatus))
	}
	for code, status := range wantStatus {
		if code == api.CodeInternal {
			continue // TestInternalErrorHidden
		}
		w := httptest.NewRecorder()
		writeError(w, httptest.NewRequest("PUT", "/records/a", nil), api.Errorf(code, "the detail of %s", code).With("currentVersion", 3))
		var p map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("%s: %v: %s", code, err, w.Body)
		}
		want := map[string]any{
			"type":           "urn:switchboard:error:" + string(code),
			"title":          http.StatusText(status),
			"status":         float64(status),
			"detail":         "the detail of " + string(code),
			"code":           string(code),
			"currentVersion": 3.0,
		}
		if w.Code != status || w.Header().Get("Content-Type") != "application/problem+json" || len(p) != len(want) {
			t.Errorf("%s: %d %s %s, want %d problem+json", code, w.Code, w.Header().Get("Content-Type"), w.Body, status)
		}
		for k, v := range want {
			if p[k] != v {
				t.Errorf("%s: %s is %v, want %v", code, k, p[k], v)
			}
		}
	}
}

// TestInternalErrorHidden: an error without a code, or an INTERNAL one,
// is a 500 whose cause is logged and never shown.
func TestInternalErrorHidden(t *testing.T) {
	for _, err := range []error{
		errors.New("secret cause"),
		api.Internal(errors.New("secret cause"), "secret detail"),
		fmt.Errorf("write a: %w", api.Internal(errors.New("secret cause"), "secret detail")),
	} {
		var log bytes.Buffer
		r := httptest.NewRequest("GET", "/records/a", nil)
		st := &reqState{id: "req-1", log: slog.New(slog.NewTextHandler(&log, nil))}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		w := httptest.NewRecorder()
		writeError(w, r, err)
		var p struct {
			Status                  int
			Code, Detail, RequestID string
		}
		json.Unmarshal(w.Body.Bytes(), &p)
		if p.RequestID != "req-1" || st.code != api.CodeInternal {
			t.Errorf("%v: requestId %q, code %q; want the request's id in the body and INTERNAL for the log line", err, p.RequestID, st.code)
		}
		if w.Code != 500 || p.Status != 500 || p.Code != "INTERNAL" || p.Detail != "the server could not complete the request" ||
			strings.Contains(w.Body.String(), "secret") {
			t.Errorf("%v: %d %s", err, w.Code, w.Body)
		}
		if !strings.Contains(log.String(), "secret cause") || !strings.Contains(log.String(), "/records/a") {
			t.Errorf("%v: the log says %q, want the cause and the path", err, log.String())
		}
	}
}
