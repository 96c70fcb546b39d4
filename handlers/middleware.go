package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/switchboard-dev/switchboard/api"
)

type userKey struct{}

type logKey struct{}

// loggerFrom returns the server's logger, which logRequests put in the
// context.
func loggerFrom(r *http.Request) *slog.Logger {
	if l, ok := r.Context().Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// userFrom returns the caller that authenticate put in the context.
func userFrom(r *http.Request) api.User {
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
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
		})
	}
}

// bearer returns the request's token: the Authorization header's, or for
// GET only (EventSource cannot set headers, and neither a cookie nor a URL
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
	get := r.Method == http.MethodGet
	if t := r.URL.Query().Get("access_token"); get && t != "" {
		return t, false, nil
	}
	if c, err := r.Cookie(tokenCookie); err == nil && c.Value != "" && (get || cookieAllowed(r)) {
		return c.Value, true, nil
	}
	return "", false, nil
}

// logRequests writes one log line per request, and observes its latency.
// The query string is never logged: it may hold an access token.
func logRequests(log *slog.Logger, m *Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), logKey{}, log)))
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route := chi.RouteContext(r.Context()).RoutePattern()
			elapsed := time.Since(start)
			m.requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Observe(elapsed.Seconds())
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", elapsed), slog.String("remote", r.RemoteAddr))
		})
	}
}
