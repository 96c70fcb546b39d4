package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/switchboard-dev/switchboard/api"
)

type userKey struct{}

type stateKey struct{}

// reqState is what logRequests keeps of a request while it is served, for
// its log line and its error answers. The request's own goroutine writes
// it; logRequests reads it once the handler has returned.
type reqState struct {
	id   string       // the request id, in X-Request-Id and every problem+json
	log  *slog.Logger // the server's logger (loggerFrom adds the request id)
	code api.Code     // the error answered, if any (writeError)
	// limit is the variable of the limit that refused the request, if one
	// did (writeError): limit refusals are counted by it.
	limit string
	user  string // the authenticated user, if any (authenticate)
	// caller is the request's caller, once authenticate resolved it
	// (authed): kept here rather than in a context of its own, which
	// would copy the request once more.
	caller api.User
	authed bool
}

// stateFrom returns the request's state, which logRequests put in the
// context, or nil outside logRequests.
func stateFrom(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// loggerFrom returns the server's logger with the request's id, which
// logRequests put in the context. It is built when asked for: few
// requests log more than their request line.
func loggerFrom(r *http.Request) *slog.Logger {
	if st := stateFrom(r); st != nil {
		return st.log.With(slog.String("request_id", st.id))
	}
	return slog.Default()
}

// userFrom returns the caller that authenticate resolved.
func userFrom(r *http.Request) api.User {
	if st := stateFrom(r); st != nil && st.authed {
		return st.caller
	}
	u, _ := r.Context().Value(userKey{}).(api.User)
	return u
}

// Verifier checks a caller's token; auth.Verifier is the server's.
type Verifier interface {
	// Verify returns the token's user and expiry, or an UNAUTHENTICATED
	// error that never repeats the token.
	Verify(ctx context.Context, token string) (api.User, time.Time, error)
}

// authenticate resolves the caller of every request from its token (see
// bearer), checked by v. In open mode a request without a token is an
// anonymous user, but a token that is sent must still verify; otherwise a
// token is required. A nil v verifies nothing: every token is refused.
func authenticate(v Verifier, open bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, err := bearer(r)
			if err != nil {
				writeError(w, r, err)
				return
			}
			var user api.User
			switch {
			case token == "" && !open:
				writeError(w, r, api.Errorf(api.CodeUnauthenticated, "send a token: Authorization: Bearer <token>"))
				return
			case token != "" && v == nil:
				writeError(w, r, api.Errorf(api.CodeUnauthenticated, "the token cannot be verified: no verifier is configured"))
				return
			case token != "":
				var exp time.Time
				if user, exp, err = v.Verify(r.Context(), token); err != nil {
					writeError(w, r, err)
					return
				}
				user.Expires = exp
			}
			if st := stateFrom(r); st != nil {
				if token != "" {
					st.user = user.ID
				}
				st.caller, st.authed = user, true
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
		})
	}
}

// bearer returns the request's token: the Authorization header's, or for
// GET and HEAD only (EventSource cannot set headers, and neither a cookie nor a URL
// may authorise a write) ?access_token= or the sb_token cookie; the cookie
// also where allowCookie let it (refresh and logout, from a trusted page).
// The header wins; one that is not "Bearer <token>" is an error.
func bearer(r *http.Request) (string, error) {
	token, _, err := credential(r)
	return token, err
}

// credential is bearer, and says whether the token came by cookie.
func credential(r *http.Request) (token string, byCookie bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return "", false, api.Errorf(api.CodeUnauthenticated, `the Authorization header must be "Bearer <token>"`)
		}
		return token, false, nil
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	if !get && !cookieAllowed(r) {
		return "", false, nil // a write: neither the URL nor a cookie authorises it
	}
	if t := r.URL.Query().Get("access_token"); get && t != "" {
		return t, false, nil
	}
	if c, err := r.Cookie(tokenCookie); err == nil && c.Value != "" {
		return c.Value, true, nil
	}
	return "", false, nil
}

// logRequests gives every request an id (requestID), sent back in
// X-Request-Id and in every problem+json, writes one log line per request
// (its route, status, error code, duration in milliseconds, user and id)
// and observes its latency by route pattern. The query string is never
// logged: it may hold an access token.
func logRequests(log *slog.Logger, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			st := &reqState{id: requestID(r), log: log}
			w.Header().Set(RequestIDHeader, st.id)
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route := routeLabel(chi.RouteContext(r.Context()), status)
			end := time.Now()
			elapsed := end.Sub(start)
			m.observeRequest(r.Method, route, status, elapsed)
			if st.limit != "" {
				m.Refused(st.limit)
			}
			if !log.Enabled(r.Context(), slog.LevelInfo) {
				return
			}
			// A record of its own, without the caller's program counter
			// (runtime.Callers), which no handler of ours logs.
			rec := slog.NewRecord(end, slog.LevelInfo, "request", 0)
			rec.AddAttrs(
				slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Int("bytes", ww.BytesWritten()),
				slog.Float64("duration_ms", milliseconds(elapsed)),
				slog.String("remote", r.RemoteAddr), slog.String("request_id", st.id),
			)
			if st.code != "" {
				rec.AddAttrs(slog.String("code", string(st.code)))
			}
			if st.limit != "" {
				rec.AddAttrs(slog.String("limit", st.limit))
			}
			if st.user != "" {
				rec.AddAttrs(slog.String("user", st.user))
			}
			log.Handler().Handle(r.Context(), rec)
		})
	}
}

// routeLabel is the route pattern that served a request, for the metrics
// and the log: never the raw path, whose names are unbounded. A request no
// route matched is "unmatched", one whose method no route takes is
// "method_not_allowed".
func routeLabel(rc *chi.Context, status int) string {
	route := ""
	if rc != nil {
		route = rc.RoutePattern()
	}
	switch {
	case route != "" && route != "/*":
		return route
	case status == http.StatusMethodNotAllowed:
		return "method_not_allowed"
	}
	return "unmatched"
}

// milliseconds is d in milliseconds, to the microsecond.
func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
