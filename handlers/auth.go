package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// tokenCookie is the cookie that carries a token for browsers, whose
// EventSource cannot send an Authorization header.
const tokenCookie = "sb_token"

// Webhook asks the application who holds some credentials: auth.Webhook,
// the AUTH_WEBHOOK_URL.
type Webhook interface {
	// Login returns the identity of the holder of credentials (any JSON),
	// told the client's address and user agent; or an UNAUTHENTICATED
	// error when the webhook refuses them, AUTH_UNAVAILABLE when it gives
	// no identity.
	Login(ctx context.Context, credentials json.RawMessage, remoteAddr, userAgent string) (Identity, error)
}

// Identity is who the webhook says the holder of credentials is.
type Identity struct {
	// ID is the user's id, the token's sub.
	ID string
	// ClientData goes back to the client (JSON; null when absent).
	ClientData json.RawMessage
	// ServerData is the token's data claim: user.data for the rules.
	ServerData map[string]any
}

// Issuer signs the server's own tokens: auth.Issuer, with JWT_SECRET.
type Issuer interface {
	// Issue signs a token for id with data, and returns it and its expiry.
	Issue(id string, data map[string]any) (token string, exp time.Time, err error)
	// Renew signs a new token of token's identity (sub and data), and
	// returns it, its expiry and the id; a token that the issuer did not
	// sign is UNAUTHENTICATED.
	Renew(token string) (fresh string, exp time.Time, id string, err error)
}

// Revoker refuses a token from now until it expires, on every instance.
type Revoker interface {
	Revoke(ctx context.Context, jti string, until time.Time) error
}

// tokenAnswer is the body of a login or a refresh.
type tokenAnswer struct {
	Token      string          `json:"token"`
	ExpiresAt  string          `json:"expiresAt"`
	ID         string          `json:"id"`
	ClientData json.RawMessage `json:"clientData"`
}

// login is POST /auth/login: the body (any JSON) goes to the webhook, and
// an identity it answers gets a token, also as the sb_token cookie with
// ?cookie=true.
func login(hook Webhook, issuer Issuer) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		cookie, err := boolQuery(r, "cookie")
		if err != nil {
			return err
		}
		credentials, err := readJSON(r, nil)
		if err != nil {
			return err
		}
		if hook == nil || issuer == nil {
			return api.Errorf(api.CodeAuthUnavailable, "login is not configured on this server: it needs AUTH_WEBHOOK_URL (with AUTH_WEBHOOK_SECRET and JWT_SECRET)")
		}
		id, err := hook.Login(r.Context(), credentials, r.RemoteAddr, r.UserAgent())
		if err != nil {
			if api.IsCode(err, api.CodeAuthUnavailable) {
				loggerFrom(r).WarnContext(r.Context(), "login refused: the auth webhook gave no identity", "reason", err.Error())
			}
			return err
		}
		token, exp, err := issuer.Issue(id.ID, id.ServerData)
		if err != nil {
			return api.Internal(err, "issue a token")
		}
		answerToken(w, r, cookie, tokenAnswer{Token: token, ExpiresAt: rfc3339(exp), ID: id.ID, ClientData: id.ClientData})
		return nil
	})
}

// refresh is POST /auth/refresh: a new token of the caller's identity, and
// a new cookie when the token came by cookie (or with ?cookie=true). The
// answer's clientData is null: the webhook is not asked again.
func refresh(issuer Issuer) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		cookie, err := boolQuery(r, "cookie")
		if err != nil {
			return err
		}
		token, byCookie, err := credential(r) // authenticate has verified it
		switch {
		case err != nil:
			return err
		case token == "":
			return api.Errorf(api.CodeUnauthenticated, "refresh needs a token: Authorization: Bearer <token>, or the sb_token cookie from a page of a trusted origin")
		case issuer == nil:
			return api.Errorf(api.CodeAuthUnavailable, "this server does not issue tokens (JWT_SECRET is not set): renew the token with the identity provider that issued it")
		}
		fresh, exp, id, err := issuer.Renew(token)
		if err != nil {
			return err
		}
		answerToken(w, r, cookie || byCookie, tokenAnswer{Token: fresh, ExpiresAt: rfc3339(exp), ID: id, ClientData: json.RawMessage("null")})
		return nil
	})
}

// logout is POST /auth/logout: it revokes the token it was called with
// (the header's, or the cookie's from a page of a trusted origin) until it
// expires, and clears the cookie. A token that does not verify is
// UNAUTHENTICATED: nothing was revoked (the cookie is cleared all the
// same). Without a token nothing happens (a form on another site, whose
// cookie is not taken, cannot log the browser out): in token mode, where
// every request needs one, that is UNAUTHENTICATED too.
func logout(v Verifier, revoker Revoker, open bool) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		token, _, err := credential(r)
		if err != nil {
			return err
		}
		if token == "" && !open {
			return api.Errorf(api.CodeUnauthenticated, "no token: send it as \"Authorization: Bearer <token>\" (or, from a page of a trusted origin, the sb_token cookie)")
		}
		if token != "" {
			http.SetCookie(w, clearedCookie(r))
			if v == nil {
				return api.Errorf(api.CodeUnauthenticated, "the token cannot be verified: no verifier is configured")
			}
			user, exp, err := v.Verify(r.Context(), token)
			if err != nil {
				return err
			}
			if user.TokenID != "" && revoker != nil {
				if err := revoker.Revoke(r.Context(), user.TokenID, exp); err != nil {
					return api.Internal(err, "revoke a token")
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// answerToken writes a token answer, never cached, with the cookie when
// asked.
func answerToken(w http.ResponseWriter, r *http.Request, cookie bool, a tokenAnswer) {
	if cookie {
		exp, _ := time.Parse(time.RFC3339, a.ExpiresAt)
		http.SetCookie(w, newTokenCookie(r, a.Token, exp))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, a)
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// newTokenCookie is the sb_token cookie holding token until exp. Max-Age
// rounds down, so that a browser never sends the token after it expired.
func newTokenCookie(r *http.Request, token string, exp time.Time) *http.Cookie {
	c := baseCookie(r)
	c.Value = token
	c.Expires = exp
	c.MaxAge = max(1, int(time.Until(exp)/time.Second))
	return c
}

// clearedCookie removes the sb_token cookie: same attributes, Max-Age<0.
func clearedCookie(r *http.Request) *http.Cookie {
	c := baseCookie(r)
	c.Expires = time.Unix(0, 0)
	c.MaxAge = -1
	return c
}

// baseCookie has the attributes of every sb_token cookie: HttpOnly (no
// script reads it), SameSite=Lax (no other site's request carries it,
// except a top-level GET), Path=/, and Secure when the request came over
// HTTPS (TLS here, or at a proxy that says so in X-Forwarded-Proto, as
// Fly's and Cloud Run's do): a cookie set Secure over plain HTTP is
// never sent back on it, which would leave a server reached over plain
// HTTP (a container's name on a private network) without its cookie.
func baseCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{
		Name: tokenCookie, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: strings.HasPrefix(ownOrigin(r), "https:"),
	}
}

// boolQuery reads an optional boolean query parameter (false when absent).
func boolQuery(r *http.Request, key string) (bool, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, api.InvalidParameter(key, "%s must be true or false, not %q", key, s)
	}
	return b, nil
}

// Origins are the origins of CORS_ORIGINS: pages on them may, besides the
// server's own pages, use the sb_token cookie to refresh and to log out.
// "*" allows any origin without credentials, so it trusts none with the
// cookie. The zero value trusts only the server's own origin.
type Origins struct {
	any   bool
	exact map[string]bool
}

// ParseOrigins reads CORS_ORIGINS: "" (none), "*" (any, without
// credentials) or a comma-separated list of exact origins
// (scheme://host[:port], lower case, no path).
func ParseOrigins(s string) (Origins, error) {
	var o Origins
	if strings.TrimSpace(s) == "" {
		return o, nil
	}
	if strings.TrimSpace(s) == "*" {
		o.any = true
		return o, nil
	}
	o.exact = make(map[string]bool)
	for _, origin := range strings.Split(s, ",") {
		origin = strings.TrimSpace(origin)
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Scheme+"://"+u.Host != origin ||
			origin != strings.ToLower(origin) {
			return o, fmt.Errorf("%q is not an origin: write scheme://host[:port] in lower case, without a path (or * alone, for any origin without credentials)", origin)
		}
		o.exact[origin] = true
	}
	return o, nil
}

// Any says whether the list is "*": any origin, without credentials.
func (o Origins) Any() bool { return o.any }

// trusts says whether a page of origin may use the cookie on r: it is r's
// own origin, or one of the list.
func (o Origins) trusts(r *http.Request, origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	return o.exact[origin] || origin == ownOrigin(r)
}

// ownOrigin is the origin that a page served by this request's server
// has: the request's scheme (https with TLS, or as a TLS-terminating proxy
// says in X-Forwarded-Proto or Forwarded's proto, which a browser's
// cross-origin request cannot set without a preflight this server
// refuses) and its Host.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || forwardedHTTPS(r.Header) {
		scheme = "https"
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

// forwardedHTTPS says whether the nearest proxy's headers say that the
// client came over HTTPS: X-Forwarded-Proto, or the proto of Forwarded
// (RFC 7239), their first entries.
func forwardedHTTPS(h http.Header) bool {
	if p, _, _ := strings.Cut(h.Get("X-Forwarded-Proto"), ","); p != "" {
		return strings.EqualFold(strings.TrimSpace(p), "https")
	}
	first, _, _ := strings.Cut(h.Get("Forwarded"), ",")
	for pair := range strings.SplitSeq(first, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if strings.EqualFold(k, "proto") {
			return strings.EqualFold(strings.Trim(v, `"`), "https")
		}
	}
	return false
}

type cookieKey struct{}

// allowCookie lets bearer take the sb_token cookie on the routes it wraps
// (POST /auth/refresh and /auth/logout) when the request's Origin is
// trusted: a browser sends the cookie with a request whatever page made
// it, and Origin says which page that was. Without an Origin the cookie
// is not taken.
func allowCookie(o Origins) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if o.trusts(r, r.Header.Get("Origin")) {
				r = r.WithContext(context.WithValue(r.Context(), cookieKey{}, true))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// cookieAllowed says whether allowCookie let r use the cookie.
func cookieAllowed(r *http.Request) bool {
	ok, _ := r.Context().Value(cookieKey{}).(bool)
	return ok
}
