package handlers

import (
	"net/http"
	"slices"
	"strings"

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
// preflight caching, header matching) are its, with two amends: it
// accepts a preflight's header list only as browsers send it (lowercase,
// sorted, once each), which preflightHeaders makes of any spelling; and
// it spells the exposed headers canonically ("Etag"), which the answer
// corrects.
func corsHeaders(o Origins) func(http.Handler) http.Handler {
	if !o.any && len(o.exact) == 0 {
		return func(next http.Handler) http.Handler { return next }
	}
	opts := cors.Options{
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		AllowedHeaders: []string{"Authorization", "Content-Type", "If-Match", "If-None-Match", "Last-Event-ID"},
		ExposedHeaders: exposed,
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
	c := cors.New(opts)
	expose := []string{strings.Join(exposed, ", ")}
	return func(next http.Handler) http.Handler {
		h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := w.Header()["Access-Control-Expose-Headers"]; ok {
				w.Header()["Access-Control-Expose-Headers"] = expose
			}
			next.ServeHTTP(w, r)
		}))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodOptions {
				preflightHeaders(r.Header)
			}
			h.ServeHTTP(w, r)
		})
	}
}

// maxPreflightHeaders bounds the preflight header lists preflightHeaders
// rewrites, in bytes: the allowed names, spaced and repeated, fit well.
const maxPreflightHeaders = 1024

// exposed is what a page may read of an answer besides the safelisted
// headers: the version, a created record's place, when to try again, and
// the id to quote in a bug report.
var exposed = []string{"ETag", "Location", "Retry-After", "X-Request-Id"}

// preflightHeaders rewrites a preflight's Access-Control-Request-Headers
// (in one field or several) as the Fetch standard has browsers send it:
// lowercase, sorted, each name once, comma-separated. A list longer than
// any this server allows is left as it came (rs/cors refuses it), so that
// no request makes it sort a megabyte.
func preflightHeaders(h http.Header) {
	values, ok := h["Access-Control-Request-Headers"]
	if !ok {
		return
	}
	n := 0
	for _, v := range values {
		n += len(v)
	}
	if n > maxPreflightHeaders {
		return
	}
	var names []string
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.ToLower(strings.TrimSpace(name)); name != "" {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	h["Access-Control-Request-Headers"] = []string{strings.Join(slices.Compact(names), ",")}
}
