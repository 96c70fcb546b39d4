package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authSecret is the JWT_SECRET of the token-mode servers in these tests.
const authSecret = "e2e-secret-0123456789abcdef-0123"

// signToken signs an HS256 token for sub with authSecret, expiring after ttl.
func signToken(t testing.TB, sub string, ttl time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "exp": time.Now().Add(ttl).Unix(), "data": map[string]any{"role": "tester"},
	}).SignedString([]byte(authSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuthTokenMode: a server in AUTH_MODE=token with JWT_SECRET serves
// valid tokens from the header, and on GET from ?access_token= or the
// sb_token cookie; it refuses everything else with a problem, and never
// logs a token.
func TestAuthTokenMode(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	good, expired := signToken(t, "alice", time.Hour), signToken(t, "alice", -time.Minute)
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	for _, c := range []struct {
		name, method, target, body string
		headers                    []string
	}{
		{"no token", "GET", "/records", "", nil},
		{"no token, write", "PUT", "/records/doc", `{"a":1}`, nil},
		{"expired", "GET", "/records", "", bearer(expired)},
		{"expired in the query", "GET", "/records?access_token=" + url.QueryEscape(expired), "", nil},
		{"write with the query only", "PUT", "/records/doc?access_token=" + url.QueryEscape(good), `{"a":1}`, nil},
		{"event with the query only", "POST", "/events/chat?access_token=" + url.QueryEscape(good), `{"a":1}`, nil},
		{"write with the cookie only", "PUT", "/records/doc", `{"a":1}`, []string{"Cookie", "sb_token=" + good}},
		{"malformed header", "GET", "/records", "", []string{"Authorization", good}},
		{"signed with another secret", "GET", "/records", "", bearer(signTokenWith(t, "another-secret-0123456789abcdef-01"))},
	} {
		st, h, b := doChecked(t, srv.URL, c.method, c.target, "application/json", c.body, c.headers...)
		if st != http.StatusUnauthorized || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") ||
			!strings.Contains(string(b), `"UNAUTHENTICATED"`) {
			t.Errorf("%s: %d %s %s, want a 401 UNAUTHENTICATED problem", c.name, st, h.Get("Content-Type"), b)
		}
		if strings.Contains(string(b), good) || strings.Contains(string(b), expired) {
			t.Errorf("%s: the answer repeats the token: %s", c.name, b)
		}
	}

	if st, _, b := doChecked(t, srv.URL, "PUT", "/records/doc", "application/json", `{"a":1}`, bearer(good)...); st != http.StatusCreated {
		t.Fatalf("PUT with a bearer token: %d %s", st, b)
	}
	if st, _, b := doChecked(t, srv.URL, "GET", "/records/doc?access_token="+url.QueryEscape(good), "", ""); st != http.StatusOK {
		t.Errorf("GET with ?access_token=: %d %s", st, b)
	}
	if st, _, b := doChecked(t, srv.URL, "GET", "/records/doc", "", "", "Cookie", "sb_token="+good); st != http.StatusOK {
		t.Errorf("GET with the cookie: %d %s", st, b)
	}

	c := openSSE(t, srv.URL+"/stream?record=doc&access_token="+url.QueryEscape(good), "")
	c.Expect(t, "ready")
	c.Close()
	streamWithCookie(t, srv.URL+"/stream?record=doc", good)

	srv.Stop(t)
	log := srv.Log()
	if !strings.Contains(log, `"status":401`) {
		t.Errorf("the log has no 401 request line: %s", clipBody([]byte(log)))
	}
	for name, tok := range map[string]string{"good": good, "expired": expired} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(log, tok) || strings.Contains(log, sig) {
			t.Errorf("the %s token is in the server's log", name)
		}
	}
	if strings.Contains(log, authSecret) {
		t.Error("JWT_SECRET is in the server's log")
	}
}

func signTokenWith(t testing.TB, secret string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "mallory", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// streamWithCookie opens a stream with the sb_token cookie, as a browser's
// EventSource does, and checks that it is served.
func streamWithCookie(t *testing.T, target, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.AddCookie(&http.Cookie{Name: "sb_token", Value: token})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("stream with the cookie: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestAuthOpenModeVerifiesSentTokens: in open mode a request without a
// token is anonymous, but a token that is sent must verify.
func TestAuthOpenModeVerifiesSentTokens(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "open", "JWT_SECRET": authSecret})
	if st, _, b := doChecked(t, srv.URL, "GET", "/records", "", ""); st != http.StatusOK {
		t.Errorf("anonymous: %d %s", st, b)
	}
	if st, _, b := doChecked(t, srv.URL, "GET", "/records", "", "", "Authorization", "Bearer "+signToken(t, "bob", time.Hour)); st != http.StatusOK {
		t.Errorf("good token: %d %s", st, b)
	}
	if st, _, b := doChecked(t, srv.URL, "GET", "/records", "", "", "Authorization", "Bearer "+signToken(t, "bob", -time.Minute)); st != http.StatusUnauthorized {
		t.Errorf("expired token: %d %s", st, b)
	}
}

// TestStreamEndsWithItsToken: a stream ends when the token it was opened
// with expires; the client resumes with a fresh token and its last id and
// misses nothing published meanwhile.
func TestStreamEndsWithItsToken(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	writer := signToken(t, "writer", time.Hour)
	publish := func(data string) {
		t.Helper()
		if st, _, b := do(t, "POST", srv.URL+"/events/news", "application/json", data, "Authorization", "Bearer "+writer); st != http.StatusAccepted {
			t.Fatalf("publish: %d %s", st, b)
		}
	}
	start := time.Now()
	c := openSSE(t, srv.URL+"/stream?event=news&access_token="+url.QueryEscape(signToken(t, "alice", 2*time.Second)), "")
	c.Expect(t, "ready")
	publish(`1`)
	last := c.Expect(t, "event").ID
	for { // until the stream ends (or 10 s pass: the check below fails)
		if _, ok := c.TryNext(10 * time.Second); !ok {
			break
		}
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 8*time.Second {
		t.Fatalf("the stream of a token valid for 2s ended after %s", d)
	}
	publish(`2`)
	c = openSSE(t, srv.URL+"/stream?event=news&access_token="+url.QueryEscape(signToken(t, "alice", time.Hour)), last)
	c.Expect(t, "ready")
	if f := c.Expect(t, "event"); !strings.Contains(f.Data, `"data":2`) {
		t.Fatalf("after the resume: %s", f.Data)
	}
}

// TestLogoutWithoutJTI: a token without a jti (as identity providers'
// often are) is revoked by logout all the same, and only that token; a
// token sent in another spelling (line breaks, which base64 decoders
// skip) or longer than 8 KiB is refused before it is parsed.
func TestLogoutWithoutJTI(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	revoked, kept := signToken(t, "alice", time.Hour), signToken(t, "alice", 2*time.Hour)
	if st, _, b := do(t, "POST", srv.URL+"/auth/logout", "", "", "Authorization", "Bearer "+revoked); st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, b)
	}
	if st, _, b := do(t, "GET", srv.URL+"/records", "", "", "Authorization", "Bearer "+revoked); st != http.StatusUnauthorized || !strings.Contains(string(b), "revoked") {
		t.Errorf("the revoked token: %d %s", st, b)
	}
	if st, _, b := do(t, "GET", srv.URL+"/records", "", "", "Authorization", "Bearer "+kept); st != http.StatusOK {
		t.Errorf("another token of the same user: %d %s", st, b)
	}
	i := strings.LastIndexByte(kept, '.') + 4
	for name, tok := range map[string]string{
		"with a line break": kept[:i] + "\n" + kept[i:],
		"longer than 8 KiB": kept + strings.Repeat("A", 8<<10),
	} {
		st, _, b := do(t, "GET", srv.URL+"/records?access_token="+url.QueryEscape(tok), "", "")
		if st != http.StatusUnauthorized {
			t.Errorf("a token %s: %d %s", name, st, b)
		}
	}
}

// TestAuthShortSecret: a JWT_SECRET shorter than HS256 wants is taken,
// with a warning that names its length and never shows it, and tokens
// signed with it verify.
func TestAuthShortSecret(t *testing.T) {
	const short = "short-secret"
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": short})
	if st, _, b := doChecked(t, srv.URL, "GET", "/records", "", "", "Authorization", "Bearer "+signTokenWith(t, short)); st != http.StatusOK {
		t.Errorf("GET with a token of the short secret: %d %s", st, b)
	}
	log := srv.Log()
	if !strings.Contains(log, `"level":"WARN","msg":"JWT_SECRET has 12 bytes`) || strings.Contains(log, short) {
		t.Errorf("the log does not warn of the short secret, or shows it:\n%s", log)
	}
}
