package handlers_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// token signs a token for sub with newServer's secret, valid for ttl.
func token(t *testing.T, sub string, ttl time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "exp": time.Now().Add(ttl).Unix(),
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuthenticate: where a token is read from, and what happens without
// one, in both modes.
func TestAuthenticate(t *testing.T) {
	good, expired := token(t, "alice", time.Hour), token(t, "alice", -time.Hour)
	for _, mode := range []struct {
		name string
		open bool
	}{{"token", false}, {"open", true}} {
		srv, _ := newServer(t, options{token: !mode.open})
		anonymous := http.StatusUnauthorized
		if mode.open {
			anonymous = http.StatusOK
		}
		for _, c := range []struct {
			name, method, target string
			headers              []string
			want                 int
		}{
			{"no token", "GET", "/records", nil, anonymous},
			{"header", "GET", "/records", []string{"Authorization", "Bearer " + good}, http.StatusOK},
			{"header, lower-case scheme", "GET", "/records", []string{"Authorization", "bearer " + good}, http.StatusOK},
			{"query on GET", "GET", "/records?access_token=" + good, nil, http.StatusOK},
			{"cookie on GET", "GET", "/records", []string{"Cookie", "sb_token=" + good}, http.StatusOK},
			{"cookie on HEAD", "HEAD", "/records/missing", []string{"Cookie", "sb_token=" + good}, http.StatusNotFound},
			{"header wins", "GET", "/records?access_token=" + good, []string{"Authorization", "Bearer " + expired}, http.StatusUnauthorized},
			{"write by header", "PUT", "/records/a", []string{"Authorization", "Bearer " + good}, http.StatusCreated},
			{"expired", "GET", "/records", []string{"Authorization", "Bearer " + expired}, http.StatusUnauthorized},
			{"expired in the query", "GET", "/records?access_token=" + expired, nil, http.StatusUnauthorized},
			{"garbage", "GET", "/records", []string{"Authorization", "Bearer nonsense"}, http.StatusUnauthorized},
			{"Basic", "GET", "/records", []string{"Authorization", "Basic YTpi"}, http.StatusUnauthorized},
			{"Bearer alone", "GET", "/records", []string{"Authorization", "Bearer"}, http.StatusUnauthorized},
		} {
			resp, body := send(t, c.method, srv.URL+c.target, "application/json", "1", c.headers...)
			if c.want == http.StatusUnauthorized {
				wantProblem(t, mode.name+": "+c.name, resp, body, c.want, "UNAUTHENTICATED")
				if resp.Header.Get("WWW-Authenticate") != "Bearer" || strings.Contains(string(body), good) || strings.Contains(string(body), expired) {
					t.Errorf("%s: %s: WWW-Authenticate %q, body %s", mode.name, c.name, resp.Header.Get("WWW-Authenticate"), body)
				}
			} else if resp.StatusCode != c.want && !(c.want == http.StatusCreated && resp.StatusCode == http.StatusOK) {
				t.Errorf("%s: %s: %d %s, want %d", mode.name, c.name, resp.StatusCode, body, c.want)
			}
		}
		// A write never takes its token from the query or a cookie.
		for _, c := range [][]string{{"/records/b?access_token=" + good}, {"/records/b", "Cookie", "sb_token=" + good}} {
			resp, body := send(t, "PUT", srv.URL+c[0], "application/json", "1", c[1:]...)
			if mode.open {
				if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
					t.Errorf("open: PUT %v: %d %s (served as anonymous)", c, resp.StatusCode, body)
				}
				continue
			}
			wantProblem(t, "token: PUT "+c[0], resp, body, http.StatusUnauthorized, "UNAUTHENTICATED")
		}
	}
}
