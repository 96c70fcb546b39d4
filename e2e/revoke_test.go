package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// signJTIToken signs an HS256 token for sub with the id jti, with
// authSecret, expiring in an hour.
func signJTIToken(t testing.TB, sub, jti string) (string, time.Time) {
	t.Helper()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "jti": jti, "exp": exp.Unix()}).
		SignedString([]byte(authSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s, exp
}

// waitEnded waits up to timeout for the stream to end, failing on any
// frame other than a record change already under way.
func waitEnded(t testing.TB, c *sseClient, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, ok := c.TryNext(time.Until(deadline))
		switch {
		case !ok && time.Now().Before(deadline):
			return // the stream ended
		case !ok:
			t.Fatalf("the stream did not end within %v", timeout)
		case f.Event != "record":
			t.Fatalf("the stream of a revoked token got a %s frame: %s", f.Event, f.Data)
		}
	}
}

// TestPGRevokeEveryInstance: two servers share one Postgres; a token is
// revoked by a logout on A. Within a second both servers refuse it and
// end the streams opened with it, and refuse their reconnects; another
// token of the same user goes on working.
func TestPGRevokeEveryInstance(t *testing.T) {
	_, servers := pgServers(t, 2, map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret})
	a, b := servers[0], servers[1]
	revoked, _ := signJTIToken(t, "alice", "e2e-revoked")
	other, _ := signJTIToken(t, "alice", "e2e-other")
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	if st, _, body := doChecked(t, a.URL, "PUT", "/records/doc", "application/json", `{"n":1}`, bearer(revoked)...); st != http.StatusCreated {
		t.Fatalf("PUT before the revocation: %d %s", st, body)
	}
	streams := map[string]*sseClient{}
	for name, srv := range map[string]*testServer{"A": a, "B": b} {
		c := openSSE(t, srv.URL+"/stream?record=doc&access_token="+url.QueryEscape(revoked), "")
		c.Expect(t, "ready")
		c.Expect(t, "snapshot")
		streams[name] = c
	}
	kept := openSSE(t, b.URL+"/stream?record=doc&access_token="+url.QueryEscape(other), "")
	kept.Expect(t, "ready")
	kept.Expect(t, "snapshot")

	start := time.Now()
	if st, _, body := doChecked(t, a.URL, "POST", "/auth/logout", "", "", bearer(revoked)...); st != http.StatusNoContent {
		t.Fatalf("logout on A: %d %s", st, body)
	}
	for name, srv := range map[string]*testServer{"A": a, "B": b} {
		deadline := start.Add(time.Second)
		for {
			st, _, body := doChecked(t, srv.URL, "GET", "/records/doc", "", "", bearer(revoked)...)
			if st == http.StatusUnauthorized && strings.Contains(string(body), `"UNAUTHENTICATED"`) && strings.Contains(string(body), "revoked") {
				t.Logf("%s refuses the token %v after the revocation", name, time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still answers the revoked token %v after the revocation: %d %s", name, time.Since(start), st, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
		waitEnded(t, streams[name], time.Until(start.Add(time.Second)))
		if _, err := testkit.Dial(srv.URL+"/stream?record=doc&access_token="+url.QueryEscape(revoked), ""); err == nil || !strings.Contains(err.Error(), ": 401 ") {
			t.Errorf("%s: the revoked token's reconnect: %v, want 401", name, err)
		}
		if st, _, body := doChecked(t, srv.URL, "PUT", "/records/doc", "application/json", `{"n":2}`, bearer(revoked)...); st != http.StatusUnauthorized {
			t.Errorf("%s: PUT with the revoked token: %d %s", name, st, body)
		}
	}
	if st, _, body := doChecked(t, a.URL, "PUT", "/records/doc", "application/json", `{"n":3}`, bearer(other)...); st != http.StatusOK || !strings.Contains(string(body), `"version":2`) {
		t.Errorf("PUT with the other token: %d %s; want version 2 (the refused PUTs changed nothing)", st, body)
	}
	if f := kept.Next(t, 5*time.Second); f.Event != "record" {
		t.Errorf("the other token's stream got %s %s, want the change", f.Event, f.Data)
	}
}
