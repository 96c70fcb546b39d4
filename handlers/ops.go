package handlers

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-dev/switchboard/api"
)

func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Drainer says whether the server drains (realtime.Hub does).
type Drainer interface {
	Draining() bool
	DrainHint() time.Duration
}

// readyz answers 200 when the store answers and the bus hears other
// instances, 503 UNAVAILABLE otherwise, and while the server drains.
func readyz(store api.Store, bus api.Bus, d Drainer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.Draining() {
			writeError(w, r, api.Errorf(api.CodeUnavailable, "the server is shutting down"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			writeError(w, r, api.Errorf(api.CodeUnavailable, "the store does not answer"))
			return
		}
		if err := bus.Ready(ctx); err != nil {
			writeError(w, r, api.Errorf(api.CodeUnavailable, "the notification listener is not connected"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// refuseDraining answers a stream opened while the server drains with 503
// UNAVAILABLE and a Retry-After of a drain hint, so that the client, or a
// proxy that retries, comes back when the streams the drain ended do.
// (A drain that begins after this look still refuses the stream, in
// realtime.Hub.Open, without the header.)
func refuseDraining(d Drainer, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !d.Draining() {
			next(w, r)
			return
		}
		secs := (d.DrainHint() + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		writeError(w, r, api.Errorf(api.CodeUnavailable, "the server is shutting down; connect again"))
	}
}

func metrics(m *Metrics) http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func spec(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(doc)
	}
}
