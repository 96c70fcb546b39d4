package handlers

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboard-dev/switchboard/realtime"
)

// BenchmarkLogRequests: what the request line's middleware costs a
// request that logs nothing but its line (as a publish does).
func BenchmarkLogRequests(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := logRequests(log, NewMetrics(&realtime.Stats{}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	r := httptest.NewRequest(http.MethodPost, "/events/chat", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
