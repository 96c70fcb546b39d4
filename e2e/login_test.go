package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// hookSecret is the AUTH_WEBHOOK_SECRET of these tests.
const hookSecret = "e2e-webhook-secret-0123456789"

// loginHook is an application's auth webhook: it fails the test when a
// request is not signed with hookSecret, is not JSON, or is not
// {"authData", "connection": {"remoteAddr", "userAgent"}}, and then answers
// with its current answer, which the test may change.
type loginHook struct {
	*httptest.Server
	calls  atomic.Int32
	mu     sync.Mutex
	answer http.HandlerFunc
	last   map[string]any // the last request's body
}

func newLoginHook(t testing.TB, answer http.HandlerFunc) *loginHook {
	t.Helper()
	h := &loginHook{answer: answer}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("webhook: read: %v", err)
		}
		m := hmac.New(sha256.New, []byte(hookSecret))
		m.Write(body)
		if got, want := r.Header.Get("X-Signature"), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
			t.Errorf("webhook: X-Signature %q, want %q", got, want)
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		var req map[string]any
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("webhook: body %s: %v", body, err)
		}
		conn, _ := req["connection"].(map[string]any)
		_, hasData := req["authData"]
		_, hasAddr := conn["remoteAddr"].(string)
		_, hasUA := conn["userAgent"].(string)
		if !hasData || !hasAddr || !hasUA || len(req) != 2 {
			t.Errorf("webhook: body %s is not {authData, connection: {remoteAddr, userAgent}}", body)
		}
		h.mu.Lock()
		h.last = req
		answer := h.answer
		h.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *loginHook) set(answer http.HandlerFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answer = answer
}

func (h *loginHook) lastRequest() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// hookJSON answers status with a JSON body.
func hookJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// loginEnv is a token-mode server's environment with login through hook,
// which has 5 s to answer (a busy machine's round trip is not a test's
// business; TestLoginWebhook's hanging webhook sets its own).
func loginEnv(hookURL string, extra ...string) map[string]string {
	env := map[string]string{
		"AUTH_MODE": "token", "JWT_SECRET": authSecret,
		"AUTH_WEBHOOK_URL": hookURL, "AUTH_WEBHOOK_SECRET": hookSecret, "AUTH_WEBHOOK_TIMEOUT": "5s",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// loginAnswer is the body of a login or a refresh.
type loginAnswer struct {
	Token      string          `json:"token"`
	ExpiresAt  time.Time       `json:"expiresAt"`
	ID         string          `json:"id"`
	ClientData json.RawMessage `json:"clientData"`
}

// logIn logs in with credentials and returns the answer and its headers.
func logIn(t testing.TB, base, query, credentials string) (loginAnswer, http.Header) {
	t.Helper()
	st, h, b := doChecked(t, base, "POST", "/auth/login"+query, "application/json", credentials)
	var a loginAnswer
	if st != http.StatusOK || json.Unmarshal(b, &a) != nil || a.Token == "" {
		t.Fatalf("login: %d %s", st, b)
	}
	return a, h
}

// tokenCookie returns the sb_token Set-Cookie of h, as sent.
func tokenCookie(h http.Header) string {
	for _, c := range h.Values("Set-Cookie") {
		if strings.HasPrefix(c, "sb_token=") {
			return c
		}
	}
	return ""
}

// TestLoginWebhook: every answer of the webhook, and what login makes of
// it. Only a 2xx identity logs in; its token works on GET and on a stream
// and carries sub, exp, jti and the serverData as data.
func TestLoginWebhook(t *testing.T) {
	yes := newLoginHook(t, hookJSON(200, `{"id":"mallory"}`))
	release := make(chan struct{})
	defer close(release)
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","clientData":{"name":"Alice"},"serverData":{"role":"admin","teams":["blue"]}}`))
	srv := startServer(t, loginEnv(hook.URL, "AUTH_WEBHOOK_TIMEOUT", "300ms"))

	before := time.Now()
	a, h := logIn(t, srv.URL, "", `{"user":"alice","password":"pw"}`)
	after := time.Now()
	if a.ID != "alice" || string(a.ClientData) != `{"name":"Alice"}` || tokenCookie(h) != "" {
		t.Errorf("login: %+v, Set-Cookie %q", a, tokenCookie(h))
	}
	req := hook.lastRequest()
	if data, _ := req["authData"].(map[string]any); data["user"] != "alice" || data["password"] != "pw" {
		t.Errorf("the webhook got authData %v", req["authData"])
	}
	if conn := req["connection"].(map[string]any); !strings.HasPrefix(conn["remoteAddr"].(string), "127.0.0.1:") || conn["userAgent"] != "Go-http-client/1.1" {
		t.Errorf("the webhook got connection %v", conn)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"})).ParseWithClaims(a.Token, claims, func(*jwt.Token) (any, error) { return []byte(authSecret), nil }); err != nil {
		t.Fatalf("the token does not verify with JWT_SECRET: %v", err)
	}
	exp, _ := claims.GetExpirationTime()
	data, _ := claims["data"].(map[string]any)
	if claims["sub"] != "alice" || claims["jti"] == "" || claims["jti"] == nil || data["role"] != "admin" ||
		!exp.Equal(a.ExpiresAt) || a.ExpiresAt.Before(before.Add(time.Hour-time.Second)) || a.ExpiresAt.After(after.Add(time.Hour)) {
		t.Errorf("claims %v, expiresAt %v", claims, a.ExpiresAt)
	}
	if st, _, b := doChecked(t, srv.URL, "GET", "/records", "", "", "Authorization", "Bearer "+a.Token); st != http.StatusOK {
		t.Errorf("GET /records with the token: %d %s", st, b)
	}
	c := openSSE(t, srv.URL+"/stream?record=doc&access_token="+url.QueryEscape(a.Token), "")
	c.Expect(t, "ready")
	c.Expect(t, "snapshot")
	c.Close()

	for _, row := range []struct {
		name   string
		answer http.HandlerFunc
		status int
		code   string
	}{
		{"401", hookJSON(401, `{"error":"bad password"}`), 401, "UNAUTHENTICATED"},
		{"403", hookJSON(403, ``), 401, "UNAUTHENTICATED"},
		{"500", hookJSON(500, `{"id":"alice"}`), 503, "AUTH_UNAVAILABLE"},
		{"502", hookJSON(502, ``), 503, "AUTH_UNAVAILABLE"},
		{"404", hookJSON(404, `{}`), 503, "AUTH_UNAVAILABLE"},
		{"hangs past AUTH_WEBHOOK_TIMEOUT", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, 503, "AUTH_UNAVAILABLE"},
		{"302 to a webhook that says yes", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, yes.URL, http.StatusFound) }, 503, "AUTH_UNAVAILABLE"},
		{"308 to a webhook that says yes", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, yes.URL, http.StatusPermanentRedirect)
		}, 503, "AUTH_UNAVAILABLE"},
		{"garbage", hookJSON(200, `{"id":"alice",`), 503, "AUTH_UNAVAILABLE"},
		{"wrong shape", hookJSON(200, `["alice"]`), 503, "AUTH_UNAVAILABLE"},
		{"missing id", hookJSON(200, `{"clientData":{},"serverData":{}}`), 503, "AUTH_UNAVAILABLE"},
		{"serverData not an object", hookJSON(200, `{"id":"alice","serverData":"admin"}`), 503, "AUTH_UNAVAILABLE"},
		{"non-JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<html>{"id":"alice"}</html>`)
		}, 503, "AUTH_UNAVAILABLE"},
	} {
		hook.set(row.answer)
		calls := hook.calls.Load()
		st, h, b := doChecked(t, srv.URL, "POST", "/auth/login?cookie=true", "application/json", `{"user":"alice"}`)
		if st != row.status || !strings.Contains(string(b), `"`+row.code+`"`) || tokenCookie(h) != "" || strings.Contains(string(b), "token") {
			t.Errorf("%s: %d %s Set-Cookie %q, want %d %s", row.name, st, b, tokenCookie(h), row.status, row.code)
		}
		if hook.calls.Load() != calls+1 {
			t.Errorf("%s: the webhook was called %d times", row.name, hook.calls.Load()-calls)
		}
	}
	if n := yes.calls.Load(); n != 0 {
		t.Errorf("a redirect was followed: its target was called %d times", n)
	}

	calls := hook.calls.Load()
	for _, body := range []string{`{"user":`, ``, `{"a":1} {"b":2}`, "\"\\udc00\""} {
		st, _, b := doChecked(t, srv.URL, "POST", "/auth/login", "application/json", body)
		if st != http.StatusBadRequest || !strings.Contains(string(b), `"INVALID_JSON"`) {
			t.Errorf("login with %q: %d %s", body, st, b)
		}
	}
	if n := hook.calls.Load() - calls; n != 0 {
		t.Errorf("invalid bodies called the webhook %d times", n)
	}
}

// TestLoginWebhookDown: a webhook that cannot be reached (its listener
// closed) is 503 AUTH_UNAVAILABLE.
func TestLoginWebhookDown(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice"}`))
	hook.Close()
	srv := startServer(t, loginEnv(hook.URL))
	st, _, b := doChecked(t, srv.URL, "POST", "/auth/login", "application/json", `{}`)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(b), `"AUTH_UNAVAILABLE"`) {
		t.Errorf("webhook down: %d %s", st, b)
	}
}

// TestLoginNotConfigured: without AUTH_WEBHOOK_URL login is 503
// AUTH_UNAVAILABLE naming it (server/config_test.go checks that a webhook
// without JWT_SECRET or AUTH_WEBHOOK_SECRET stops the server at start).
func TestLoginNotConfigured(t *testing.T) {
	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	st, _, b := doChecked(t, srv.URL, "POST", "/auth/login", "application/json", `{}`)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(b), "AUTH_WEBHOOK_URL") {
		t.Errorf("login without a webhook: %d %s", st, b)
	}
}

// TestLoginCookieFlow: the cookie that login sets opens streams and reads,
// never writes; refresh takes it only from a page of the server's own
// origin (or CORS_ORIGINS), the header from anywhere; logout clears it.
func TestLoginCookieFlow(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","serverData":{"role":"admin"}}`))
	srv := startServer(t, loginEnv(hook.URL, "CORS_ORIGINS", "https://app.example"))
	a, h := logIn(t, srv.URL, "?cookie=true", `{}`)
	c := tokenCookie(h)
	for _, attr := range []string{"sb_token=" + a.Token + ";", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=", "Expires="} {
		if !strings.Contains(c, attr) {
			t.Errorf("Set-Cookie %q lacks %s", c, attr)
		}
	}
	if strings.Contains(c, "Secure") {
		t.Errorf("Set-Cookie %q over plain HTTP to 127.0.0.1 is Secure", c)
	}
	cookie := "sb_token=" + a.Token
	streamWithCookie(t, srv.URL+"/stream?record=doc", a.Token)
	if st, _, b := doChecked(t, srv.URL, "GET", "/records", "", "", "Cookie", cookie); st != http.StatusOK {
		t.Errorf("GET with the cookie: %d %s", st, b)
	}
	if st, _, b := doChecked(t, srv.URL, "PUT", "/records/x", "application/json", `{}`, "Cookie", cookie, "Origin", srv.URL); st != http.StatusUnauthorized {
		t.Errorf("PUT with only the cookie: %d %s", st, b)
	}

	// Over plain HTTP the cookie is not Secure whatever the Host (a
	// container's name, say); through a proxy that says HTTPS, it is.
	for proto, secure := range map[string]bool{"": false, "https": true} {
		req, _ := http.NewRequest("POST", srv.URL+"/auth/login?cookie=true", strings.NewReader(`{}`))
		req.Host = "example.com"
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if c := tokenCookie(resp.Header); resp.StatusCode != 200 || strings.Contains(c, "Secure") != secure {
			t.Errorf("login with Host example.com, X-Forwarded-Proto %q: %d Set-Cookie %q, want Secure %v", proto, resp.StatusCode, c, secure)
		}
	}

	refresh := func(name string, headers ...string) (int, http.Header, loginAnswer) {
		t.Helper()
		st, h, b := doChecked(t, srv.URL, "POST", "/auth/refresh", "", "", headers...)
		var r loginAnswer
		json.Unmarshal(b, &r)
		if st == http.StatusOK && r.Token == "" {
			t.Errorf("%s: %s", name, b)
		}
		return st, h, r
	}
	oldClaims := claimsOf(t, a.Token)
	st, h, r := refresh("cookie, own origin", "Cookie", cookie, "Origin", srv.URL)
	newClaims := claimsOf(t, r.Token)
	if st != http.StatusOK || !strings.HasPrefix(tokenCookie(h), "sb_token="+r.Token+";") || newClaims["sub"] != "alice" ||
		newClaims["jti"] == oldClaims["jti"] || newClaims["data"].(map[string]any)["role"] != "admin" {
		t.Errorf("refresh by cookie from the own origin: %d Set-Cookie %q claims %v", st, tokenCookie(h), newClaims)
	}
	if st, _, b := doChecked(t, srv.URL, "PUT", "/records/x", "application/json", `{}`, "Authorization", "Bearer "+r.Token); st != http.StatusCreated {
		t.Errorf("the refreshed token: %d %s", st, b)
	}
	if st, h, _ := refresh("cookie, CORS_ORIGINS", "Cookie", cookie, "Origin", "https://app.example"); st != http.StatusOK || tokenCookie(h) == "" {
		t.Errorf("refresh by cookie from CORS_ORIGINS: %d Set-Cookie %q", st, tokenCookie(h))
	}
	for name, headers := range map[string][]string{
		"cookie, foreign origin": {"Cookie", cookie, "Origin", "https://evil.example"},
		"cookie, no origin":      {"Cookie", cookie},
	} {
		if st, h, _ := refresh(name, headers...); st != http.StatusUnauthorized || tokenCookie(h) != "" {
			t.Errorf("refresh %s: %d Set-Cookie %q, want 401 and no cookie", name, st, tokenCookie(h))
		}
	}
	if st, h, _ := refresh("header, foreign origin", "Authorization", "Bearer "+a.Token, "Origin", "https://evil.example"); st != http.StatusOK || tokenCookie(h) != "" {
		t.Errorf("refresh by header from a foreign origin: %d Set-Cookie %q", st, tokenCookie(h))
	}

	st, h, b := doChecked(t, srv.URL, "POST", "/auth/logout", "", "", "Cookie", cookie, "Origin", srv.URL)
	c = tokenCookie(h)
	if st != http.StatusNoContent || !strings.HasPrefix(c, "sb_token=;") || !strings.Contains(c, "Max-Age=0") ||
		!strings.Contains(c, "Path=/") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Lax") {
		t.Errorf("logout: %d %s Set-Cookie %q", st, b, c)
	}
}

// claimsOf returns a token's claims without verifying it.
func claimsOf(t testing.TB, token string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, c); err != nil {
		t.Fatalf("token: %v", err)
	}
	return c
}

// TestLoginNeverLogged: the server's whole log, through login, refresh,
// logout, a GET with ?access_token=, a stream with the cookie, a bad token
// and a webhook that fails, holds no token, no part of one's signature,
// no webhook secret and no JWT_SECRET; nor does the metrics page.
func TestLoginNeverLogged(t *testing.T) {
	hook := newLoginHook(t, hookJSON(200, `{"id":"alice","serverData":{"role":"admin"}}`))
	srv := startServer(t, loginEnv(hook.URL))
	var tokens []string
	a, h := logIn(t, srv.URL, "?cookie=true", `{"password":"hunter2-secret-password"}`)
	tokens = append(tokens, a.Token)
	if tokenCookie(h) == "" {
		t.Fatal("no cookie")
	}
	cookie := "sb_token=" + a.Token
	st, _, b := doChecked(t, srv.URL, "POST", "/auth/refresh", "", "", "Cookie", cookie, "Origin", srv.URL)
	var r loginAnswer
	if json.Unmarshal(b, &r); st != http.StatusOK {
		t.Fatalf("refresh: %d %s", st, b)
	}
	tokens = append(tokens, r.Token)
	if st, _, b := doChecked(t, srv.URL, "GET", "/records?access_token="+url.QueryEscape(r.Token), "", ""); st != http.StatusOK {
		t.Errorf("GET with ?access_token=: %d %s", st, b)
	}
	streamWithCookie(t, srv.URL+"/stream?record=doc", a.Token)
	bad := signTokenWith(t, "another-secret-0123456789abcdef-01")
	tokens = append(tokens, bad)
	doChecked(t, srv.URL, "GET", "/records?access_token="+url.QueryEscape(bad), "", "")
	doChecked(t, srv.URL, "GET", "/records", "", "", "Authorization", "Bearer "+bad)
	doChecked(t, srv.URL, "POST", "/auth/refresh", "", "", "Authorization", "Bearer "+bad)
	hook.set(hookJSON(500, `{"secret":"x"}`))
	doChecked(t, srv.URL, "POST", "/auth/login", "application/json", `{}`)
	if st, _, b := doChecked(t, srv.URL, "POST", "/auth/logout", "", "", "Authorization", "Bearer "+r.Token); st != http.StatusNoContent {
		t.Errorf("logout: %d %s", st, b)
	}
	_, _, metrics := do(t, "GET", srv.URL+"/metrics", "", "")

	srv.Stop(t)
	log := srv.Log()
	if !strings.Contains(log, `"/auth/login"`) || !strings.Contains(log, `"/auth/refresh"`) || !strings.Contains(log, `"/auth/logout"`) ||
		!strings.Contains(log, "auth webhook") {
		t.Errorf("the log lacks the auth requests: %s", clipBody([]byte(log)))
	}
	secrets := map[string]string{"JWT_SECRET": authSecret, "AUTH_WEBHOOK_SECRET": hookSecret, "the password": "hunter2-secret-password"}
	for i, tok := range tokens {
		secrets["token "+string(rune('0'+i))] = tok
		secrets["signature of token "+string(rune('0'+i))] = tok[strings.LastIndexByte(tok, '.')+1:]
	}
	for what, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("%s is in the server's log", what)
		}
		if strings.Contains(string(metrics), s) {
			t.Errorf("%s is in /metrics", what)
		}
	}
}
