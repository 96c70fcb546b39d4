package handlers

import (
	"net/http"
	"slices"

	"github.com/rs/cors"
)

// corsMaxAge is how long a browser may keep a preflight's answer, in
// seconds (Chromium keeps it at most 2 hours).
const corsMaxAge = 600

// corsHeaders lets pages of the origins of CORS_ORIGINS call the server:
// it answers preflights (an OPTIONS with Access-Control-Request-Method)
// itself, and adds the CORS headers to every other answer to an allowed
// origin, errors and streams included (a detached stream's head copies
// them: see openStream). Exact origins may send credentials (cookies,
// Authorization); "*" lets any origin in, never with credentials. An
// origin not listed gets no CORS headers, and without CORS_ORIGINS
// nothing changes. The library is rs/cors: the spec's corner cases (Vary,
// preflight caching, header matching) are its.
func corsHeaders(o Origins) func(http.Handler) http.Handler {
	if !o.any && len(o.exact) == 0 {
		return func(next http.Handler) http.Handler { return next }
	}
	opts := cors.Options{
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		AllowedHeaders: []string{"Authorization", "Content-Type", "If-Match", "If-None-Match", "Last-Event-ID"},
		// What a page may read of an answer besides the safelisted headers:
		// the version, a created record's place, when to try again, and the
		// id to quote in a bug report.
		ExposedHeaders: []string{"ETag", "Location", "Retry-After", "X-Request-Id"},
		MaxAge:         corsMaxAge,
	}
	if o.any {
		opts.AllowedOrigins = []string{"*"}
	} else {
		for origin := range o.exact {
			opts.AllowedOrigins = append(opts.AllowedOrigins, origin)
		}
		slices.Sort(opts.AllowedOrigins)
		opts.AllowCredentials = true
	}
	return cors.New(opts).Handler
}
