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

// authenticate resolves the caller of every request. In open mode a
// request without a token is an anonymous user; otherwise a token is
// required. Token verification comes with the authentication issue: until
// then a server outside open mode refuses every token.
func authenticate(open bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token := bearer(r)
			switch {
			case token == "" && open:
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, api.User{})))
			case token == "":
				writeError(w, r, api.Errorf(api.CodeUnauthenticated, "send a token: Authorization: Bearer <token>"))
			default:
				writeError(w, r, api.Errorf(api.CodeUnauthenticated, "the token cannot be verified: no verifier is configured"))
			}
		})
	}
}

// bearer returns the request's token: the Authorization header, or for
// GET streams the sb_token cookie or ?access_token=.
func bearer(r *http.Request) string {
	if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(h)
	}
	if r.Method != http.MethodGet {
		return ""
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	if c, err := r.Cookie("sb_token"); err == nil {
		return c.Value
	}
	return ""
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
