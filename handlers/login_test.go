package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/auth"
	"github.com/switchboard-dev/switchboard/handlers"
)

var hookSecret = []byte("handlers-webhook-secret")

// webhook adapts auth.Webhook to handlers.Webhook, as the server does.
type webhook struct{ *auth.Webhook }

func (w webhook) Login(ctx context.Context, credentials json.RawMessage, remoteAddr, userAgent string) (handlers.Identity, error) {
	id, err := w.Webhook.Login(ctx, credentials, auth.Connection{RemoteAddr: remoteAddr, UserAgent: userAgent})
	return handlers.Identity(id), err
}

// revocations is a Revoker that remembers what it was asked.
type revocations struct {
	mu   sync.Mutex
	jtis map[string]time.Time
}

func (r *revocations) Revoke(_ context.Context, jti string, until time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jtis[jti] = until
	return nil
}

func (r *revocations) get(jti string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.jtis[jti]
	return t, ok
}

// loginServer is a token-mode server whose login asks a real webhook
// (which checks the signature of what it is sent, and answers answer),
// with a Revoker that remembers, and origins for CORS_ORIGINS.
type loginServer struct {
	*httptest.Server
	calls   *atomic.Int32
	revoked *revocations
}

func newLoginServer(t *testing.T, answer string, origins string, change func(*handlers.Deps)) loginServer {
	t.Helper()
	var calls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Signature") != auth.Signature(hookSecret, body) || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook: X-Signature %q, Content-Type %q", r.Header.Get("X-Signature"), r.Header.Get("Content-Type"))
		}
		w.Header().Set("Content-Type", "application/json")
		status, body2, _ := strings.Cut(answer, " ")
		switch status {
		case "401":
			w.WriteHeader(401)
		case "500":
			w.WriteHeader(500)
		}
		io.WriteString(w, body2)
	}))
	t.Cleanup(hook.Close)
	issuer, err := auth.NewIssuer(auth.IssuerConfig{Secret: testSecret, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	o, err := handlers.ParseOrigins(origins)
	if err != nil {
		t.Fatal(err)
	}
	rev := &revocations{jtis: map[string]time.Time{}}
	srv, _ := newServer(t, options{token: true, deps: func(d *handlers.Deps) {
		d.Webhook = webhook{auth.NewWebhook(hook.URL, hookSecret, time.Second)}
		d.Issuer = issuer
		d.Revoker = rev
		d.Origins = o
		if change != nil {
			change(d)
		}
	}})
	return loginServer{srv, &calls, rev}
}

type tokenBody struct {
	Token      string          `json:"token"`
	ExpiresAt  string          `json:"expiresAt"`
	ID         string          `json:"id"`
	ClientData json.RawMessage `json:"clientData"`
}

func loginOK(t *testing.T, s loginServer, query string) (tokenBody, *http.Response) {
	t.Helper()
	resp, body := send(t, "POST", s.URL+"/auth/login"+query, "application/json", `{"user":"alice","password":"pw"}`)
	var tb tokenBody
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tb) != nil || tb.Token == "" {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	return tb, resp
}

// setCookie returns the response's Set-Cookie for sb_token, as sent.
func setCookie(resp *http.Response) string {
	for _, c := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "sb_token=") {
			return c
		}
	}
	return ""
}

func jtiOf(t *testing.T, token string) (string, time.Time) {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, c); err != nil {
		t.Fatal(err)
	}
	exp, _ := c.GetExpirationTime()
	jti, _ := c["jti"].(string)
	return jti, exp.Time
}

// TestLogin: the webhook's identity gets a token that works, whose
// expiry the answer tells; the webhook's refusals and failures do not;
// a body that is not JSON never reaches the webhook.
func TestLogin(t *testing.T) {
	s := newLoginServer(t, `200 {"id":"alice","clientData":{"name":"Alice"},"serverData":{"role":"admin"}}`, "", nil)
	tb, resp := loginOK(t, s, "")
	exp, err := time.Parse(time.RFC3339, tb.ExpiresAt)
	if err != nil || time.Until(exp) < 59*time.Minute || tb.ID != "alice" || string(tb.ClientData) != `{"name":"Alice"}` {
		t.Errorf("login answer %+v (%v)", tb, err)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || setCookie(resp) != "" {
		t.Errorf("login: Cache-Control %q, Set-Cookie %q", resp.Header.Get("Cache-Control"), setCookie(resp))
	}
	if _, e := jtiOf(t, tb.Token); !e.Equal(exp) {
		t.Errorf("expiresAt %v, token exp %v", exp, e)
	}
	if resp, body := send(t, "PUT", s.URL+"/records/a", "application/json", "1", "Authorization", "Bearer "+tb.Token); resp.StatusCode != http.StatusCreated {
		t.Errorf("PUT with the token: %d %s", resp.StatusCode, body)
	}

	calls := s.calls.Load()
	for _, c := range []struct{ query, ct, body, code string }{
		{"", "application/json", `{"user":`, "INVALID_JSON"},
		{"", "application/json", ``, "INVALID_JSON"},
		{"", "application/json", "\"\\ud800\"", "INVALID_JSON"},
		{"", "text/plain", `{}`, "UNSUPPORTED_MEDIA_TYPE"},
		{"?cookie=maybe", "application/json", `{}`, "INVALID_PARAMETER"},
	} {
		resp, body := send(t, "POST", s.URL+"/auth/login"+c.query, c.ct, c.body)
		p, _ := problemOf(resp, body)
		if p.Code != c.code || resp.StatusCode/100 != 4 {
			t.Errorf("login %s %q: %d %s, want %s", c.query, c.body, resp.StatusCode, body, c.code)
		}
	}
	resp, body := send(t, "POST", s.URL+"/auth/login", "application/json", `"`+strings.Repeat("x", 1<<20)+`"`)
	wantProblem(t, "login with a body over MAX_BODY_BYTES", resp, body, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	if n := s.calls.Load(); n != calls {
		t.Errorf("bad requests called the webhook %d times", n-calls)
	}

	for answer, want := range map[string]string{"401 {}": "UNAUTHENTICATED", "500 {}": "AUTH_UNAVAILABLE", `200 {"nope":1}`: "AUTH_UNAVAILABLE"} {
		s := newLoginServer(t, answer, "", nil)
		resp, body := send(t, "POST", s.URL+"/auth/login?cookie=true", "application/json", `{}`)
		status := map[string]int{"UNAUTHENTICATED": 401, "AUTH_UNAVAILABLE": 503}[want]
		wantProblem(t, "webhook "+answer, resp, body, status, want)
		if setCookie(resp) != "" {
			t.Errorf("webhook %s: Set-Cookie %q", answer, setCookie(resp))
		}
	}

	none := newLoginServer(t, "200 {}", "", func(d *handlers.Deps) { d.Webhook = nil })
	resp, body = send(t, "POST", none.URL+"/auth/login", "application/json", `{}`)
	if p := wantProblem(t, "no webhook", resp, body, 503, "AUTH_UNAVAILABLE"); !strings.Contains(p.Detail, "AUTH_WEBHOOK_URL") {
		t.Errorf("no webhook: detail %q does not name AUTH_WEBHOOK_URL", p.Detail)
	}
}

// TestTokenCookie: ?cookie=true sets sb_token, HttpOnly, SameSite=Lax,
// Path=/, until the token expires; Secure when the request came over
// HTTPS (here: as a proxy says in X-Forwarded-Proto), whatever its host.
// The cookie authorises a GET, never a write.
func TestTokenCookie(t *testing.T) {
	s := newLoginServer(t, `200 {"id":"alice"}`, "", nil)
	for _, c := range []struct {
		host, proto string
		secure      bool
	}{
		{"", "", false}, {"localhost:8080", "", false}, {"example.com", "", false}, {"switchboard:8080", "", false},
		{"example.com", "https", true}, {"localhost", "https", true}, {"example.com", "http", false},
		{"example.com", "Forwarded: for=192.0.2.1;proto=https", true}, {"example.com", `Forwarded: proto="http"`, false},
	} {
		host, secure := c.host+" "+c.proto, c.secure
		req, _ := http.NewRequest("POST", s.URL+"/auth/login?cookie=true", strings.NewReader(`{}`))
		if c.host != "" {
			req.Host = c.host
		}
		if f, ok := strings.CutPrefix(c.proto, "Forwarded: "); ok {
			req.Header.Set("Forwarded", f)
		} else if c.proto != "" {
			req.Header.Set("X-Forwarded-Proto", c.proto)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tb tokenBody
		json.NewDecoder(resp.Body).Decode(&tb)
		resp.Body.Close()
		c := setCookie(resp)
		for _, attr := range []string{"sb_token=" + tb.Token + ";", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=3599", "Expires="} {
			if !strings.Contains(c, attr) && !(attr == "Max-Age=3599" && strings.Contains(c, "Max-Age=3600")) {
				t.Errorf("Host %q: Set-Cookie %q lacks %s", host, c, attr)
			}
		}
		if strings.Contains(c, "Secure") != secure {
			t.Errorf("Host %q: Set-Cookie %q, want Secure=%v", host, c, secure)
		}
	}
	tb, resp := loginOK(t, s, "?cookie=true")
	if setCookie(resp) == "" {
		t.Fatal("no cookie")
	}
	cookie := "sb_token=" + tb.Token
	if resp, body := send(t, "GET", s.URL+"/records", "", "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Errorf("GET with the cookie: %d %s", resp.StatusCode, body)
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE"} {
		resp, body := send(t, m, s.URL+"/records/x", "application/merge-patch+json", `{}`, "Cookie", cookie, "Origin", s.URL)
		wantProblem(t, m+" with the cookie", resp, body, 401, "UNAUTHENTICATED")
	}
	resp, body := send(t, "POST", s.URL+"/events/x", "application/json", `{}`, "Cookie", cookie, "Origin", s.URL)
	wantProblem(t, "POST /events with the cookie", resp, body, 401, "UNAUTHENTICATED")
}

// TestRefresh: a valid token gets a new one of the same identity and data
// with a new jti. The cookie is honoured only with a trusted Origin: the
// server's own or one of CORS_ORIGINS ("*" trusts none); the header from
// anywhere.
func TestRefresh(t *testing.T) {
	s := newLoginServer(t, `200 {"id":"alice","serverData":{"role":"admin"}}`, "https://app.example", nil)
	tb, _ := loginOK(t, s, "")
	oldJTI, _ := jtiOf(t, tb.Token)
	cookie := "sb_token=" + tb.Token
	for _, c := range []struct {
		name      string
		headers   []string
		ok, fresh bool // 200; a new cookie
	}{
		{"header, foreign origin", []string{"Authorization", "Bearer " + tb.Token, "Origin", "https://evil.example"}, true, false},
		{"header, no origin", []string{"Authorization", "Bearer " + tb.Token}, true, false},
		{"cookie, own origin", []string{"Cookie", cookie, "Origin", s.URL}, true, true},
		{"cookie, CORS_ORIGINS", []string{"Cookie", cookie, "Origin", "https://app.example"}, true, true},
		{"cookie, own host over https", []string{"Cookie", cookie, "Origin", "https://" + strings.TrimPrefix(s.URL, "http://")}, false, false},
		{"cookie, foreign origin", []string{"Cookie", cookie, "Origin", "https://evil.example"}, false, false},
		{"cookie, null origin", []string{"Cookie", cookie, "Origin", "null"}, false, false},
		{"cookie, no origin", []string{"Cookie", cookie}, false, false},
		{"cookie in the query", nil, false, false},
	} {
		target := "/auth/refresh"
		if c.headers == nil {
			target += "?access_token=" + tb.Token
		}
		resp, body := send(t, "POST", s.URL+target, "", "", c.headers...)
		if !c.ok {
			wantProblem(t, c.name, resp, body, 401, "UNAUTHENTICATED")
			if setCookie(resp) != "" {
				t.Errorf("%s: Set-Cookie %q", c.name, setCookie(resp))
			}
			continue
		}
		var nb tokenBody
		if resp.StatusCode != 200 || json.Unmarshal(body, &nb) != nil {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
			continue
		}
		jti, _ := jtiOf(t, nb.Token)
		claims := jwt.MapClaims{}
		jwt.NewParser().ParseUnverified(nb.Token, claims)
		if nb.ID != "alice" || claims["sub"] != "alice" || claims["data"].(map[string]any)["role"] != "admin" || jti == oldJTI || string(nb.ClientData) != "null" {
			t.Errorf("%s: %s, claims %v", c.name, body, claims)
		}
		if got := setCookie(resp); (got != "") != c.fresh || (c.fresh && !strings.HasPrefix(got, "sb_token="+nb.Token+";")) {
			t.Errorf("%s: Set-Cookie %q", c.name, got)
		}
		if resp, body := send(t, "GET", s.URL+"/records", "", "", "Authorization", "Bearer "+nb.Token); resp.StatusCode != 200 {
			t.Errorf("%s: the new token: %d %s", c.name, resp.StatusCode, body)
		}
	}
	// ?cookie=true asks for a cookie with a header token too.
	resp, _ := send(t, "POST", s.URL+"/auth/refresh?cookie=true", "", "", "Authorization", "Bearer "+tb.Token)
	if resp.StatusCode != 200 || setCookie(resp) == "" {
		t.Errorf("refresh?cookie=true: %d, Set-Cookie %q", resp.StatusCode, setCookie(resp))
	}

	any := newLoginServer(t, `200 {"id":"alice"}`, "*", nil)
	tb, _ = loginOK(t, any, "")
	resp, body := send(t, "POST", any.URL+"/auth/refresh", "", "", "Cookie", "sb_token="+tb.Token, "Origin", "https://evil.example")
	wantProblem(t, `CORS_ORIGINS=*, cookie, foreign origin`, resp, body, 401, "UNAUTHENTICATED")

	noIssuer := newLoginServer(t, `200 {"id":"alice"}`, "", func(d *handlers.Deps) { d.Issuer = nil })
	resp, body = send(t, "POST", noIssuer.URL+"/auth/refresh", "", "", "Authorization", "Bearer "+token(t, "alice", time.Hour))
	if p := wantProblem(t, "refresh without JWT_SECRET's issuer", resp, body, 503, "AUTH_UNAVAILABLE"); !strings.Contains(p.Detail, "JWT_SECRET") {
		t.Errorf("detail %q does not name JWT_SECRET", p.Detail)
	}
}

// TestLogout: logout revokes the token it was called with, its jti until
// its exp, and clears the cookie; the cookie counts only from a trusted
// origin, and a logout without a token (a form on another site) clears
// nothing: UNAUTHENTICATED in token mode, 204 in open mode.
func TestLogout(t *testing.T) {
	s := newLoginServer(t, `200 {"id":"alice"}`, "", nil)
	checkCleared := func(name string, resp *http.Response) {
		t.Helper()
		c := setCookie(resp)
		for _, attr := range []string{"sb_token=;", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=0"} {
			if !strings.Contains(c, attr) {
				t.Errorf("%s: Set-Cookie %q lacks %s", name, c, attr)
			}
		}
	}
	for _, c := range []struct {
		name    string
		headers func(tok string) []string
		revoked bool
	}{
		{"header", func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }, true},
		{"cookie, own origin", func(tok string) []string { return []string{"Cookie", "sb_token=" + tok, "Origin", s.URL} }, true},
		{"cookie, foreign origin", func(tok string) []string {
			return []string{"Cookie", "sb_token=" + tok, "Origin", "https://evil.example"}
		}, false},
		{"cookie, no origin", func(tok string) []string { return []string{"Cookie", "sb_token=" + tok} }, false},
		{"nothing", func(string) []string { return nil }, false},
	} {
		tb, _ := loginOK(t, s, "")
		jti, exp := jtiOf(t, tb.Token)
		resp, body := send(t, "POST", s.URL+"/auth/logout", "", "", c.headers(tb.Token)...)
		if want := map[bool]int{true: 204, false: 401}[c.revoked]; resp.StatusCode != want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, want)
		}
		if c.revoked {
			checkCleared(c.name, resp)
		} else if got := setCookie(resp); got != "" {
			t.Errorf("%s: a logout without a token set a cookie: %q", c.name, got)
		}
		until, ok := s.revoked.get(jti)
		if ok != c.revoked || (ok && !until.Equal(exp)) {
			t.Errorf("%s: revoked %v until %v, want %v until %v", c.name, ok, until, c.revoked, exp)
		}
	}
	resp, body := send(t, "POST", s.URL+"/auth/logout", "", "", "Authorization", "Bearer "+token(t, "alice", -time.Hour))
	wantProblem(t, "logout with an expired token", resp, body, 401, "UNAUTHENTICATED")
	checkCleared("logout with an expired token", resp)

	open := newLoginServer(t, `200 {"id":"alice"}`, "", func(d *handlers.Deps) { d.OpenMode = true })
	if resp, body := send(t, "POST", open.URL+"/auth/logout", "", ""); resp.StatusCode != http.StatusNoContent || setCookie(resp) != "" {
		t.Errorf("open mode, no token: %d %s (Set-Cookie %q), want 204 and no cookie", resp.StatusCode, body, setCookie(resp))
	}

	nilRevoker := newLoginServer(t, `200 {"id":"alice"}`, "", func(d *handlers.Deps) { d.Revoker = nil })
	tb, _ := loginOK(t, nilRevoker, "")
	resp, body = send(t, "POST", nilRevoker.URL+"/auth/logout", "", "", "Authorization", "Bearer "+tb.Token)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("without a Revoker: %d %s", resp.StatusCode, body)
	}
	checkCleared("without a Revoker", resp)
}

func TestParseOrigins(t *testing.T) {
	for s, ok := range map[string]bool{
		"": true, "*": true, " * ": true, "https://app.example": true, "https://a.example, http://localhost:3000": true,
		"https://app.example/": false, "app.example": false, "https://App.example": false, "ftp://a.example": false,
		"*, https://a.example": false, "https://a.example/path": false, "https://a.example?x": false, "https://": false,
	} {
		o, err := handlers.ParseOrigins(s)
		if (err == nil) != ok {
			t.Errorf("%q: %v", s, err)
		}
		if err == nil && o.Any() != (strings.TrimSpace(s) == "*") {
			t.Errorf("%q: Any %v", s, o.Any())
		}
	}
}
