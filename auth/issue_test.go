package auth_test

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/auth"
)

func newIssuer(t *testing.T, cfg auth.IssuerConfig) *auth.Issuer {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	i, err := auth.NewIssuer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// unverified returns a token's claims, without checking anything.
func unverified(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["alg"] != "HS256" {
		t.Errorf("alg %v", tok.Header["alg"])
	}
	return claims
}

// TestIssuedTokensVerify: a token issued with the secret verifies with the
// verifier of the same secret (also when it requires an issuer and an
// audience), and carries sub, exp (after the TTL), iat, a 128-bit URL-safe
// jti of its own, and the data claim.
func TestIssuedTokensVerify(t *testing.T) {
	for _, cfg := range []auth.Config{
		{Secret: secret},
		{Secret: secret, Issuer: "https://id.example", Audience: "switchboard"},
	} {
		v, err := auth.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		i := newIssuer(t, auth.IssuerConfig{TTL: 90 * time.Minute, Issuer: cfg.Issuer, Audience: cfg.Audience})
		before := time.Now()
		tok, exp, err := i.Issue("alice", map[string]any{"role": "admin"})
		if err != nil {
			t.Fatal(err)
		}
		if d := exp.Sub(before); d < 90*time.Minute-time.Second || d > 90*time.Minute {
			t.Errorf("exp %v after issuing, want 90m", d)
		}
		u, vexp, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		if u.ID != "alice" || u.Data["role"] != "admin" || !vexp.Equal(exp) {
			t.Errorf("user %+v exp %v, want alice, role admin, exp %v", u, vexp, exp)
		}
		c := unverified(t, tok)
		jti, _ := c["jti"].(string)
		raw, err := base64.RawURLEncoding.DecodeString(jti)
		if err != nil || len(raw) != 16 {
			t.Errorf("jti %q: not 128 URL-safe bits (%v)", jti, err)
		}
		if iat, _ := c.GetIssuedAt(); iat == nil || iat.Before(before.Add(-time.Second)) || iat.After(time.Now()) {
			t.Errorf("iat %v", iat)
		}
		if cfg.Issuer != "" && (c["iss"] != cfg.Issuer || c["aud"] != cfg.Audience) {
			t.Errorf("iss %v aud %v", c["iss"], c["aud"])
		}
		other, _, _ := i.Issue("alice", nil)
		if unverified(t, other)["jti"] == jti {
			t.Error("two tokens share a jti")
		}
		if d, ok := unverified(t, other)["data"].(map[string]any); !ok || len(d) != 0 {
			t.Errorf("nil data is %v, want {}", unverified(t, other)["data"])
		}
	}
}

// TestIssuedTokenExpires: a token is refused once its exp has passed,
// a second after it too: the leeway for clock skew is not for exp.
func TestIssuedTokenExpires(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	i := newIssuer(t, auth.IssuerConfig{TTL: 2 * time.Second})
	auth.SetNow(i, func() time.Time { return time.Now().Add(-3 * time.Second) }) // issued 3s ago, for 2s
	tok, _, err := i.Issue("alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = v.Verify(context.Background(), tok)
	wantRefused(t, "expired", tok, err, "expired")
	if _, _, _, err := i.Renew(tok); err == nil {
		t.Error("an expired token was renewed")
	}
}

// TestRenew: a renewed token has the same sub and data, a new jti and a
// later exp; a token of another key or algorithm is not renewed.
func TestRenew(t *testing.T) {
	i := newIssuer(t, auth.IssuerConfig{TTL: time.Hour})
	auth.SetNow(i, func() time.Time { return time.Now().Add(-time.Minute) })
	old, oldExp, err := i.Issue("bob", map[string]any{"team": "blue", "n": 3})
	if err != nil {
		t.Fatal(err)
	}
	auth.SetNow(i, time.Now)
	fresh, exp, id, err := i.Renew(old)
	if err != nil {
		t.Fatal(err)
	}
	o, n := unverified(t, old), unverified(t, fresh)
	if id != "bob" || n["sub"] != "bob" || n["jti"] == o["jti"] || !exp.After(oldExp) {
		t.Errorf("renewed: id %s claims %v exp %v (old %v, exp %v)", id, n, exp, o, oldExp)
	}
	if d := n["data"].(map[string]any); d["team"] != "blue" || d["n"] != 3.0 {
		t.Errorf("renewed data %v", d)
	}
	rsaKey := signers(t)[0]
	for name, tok := range map[string]string{
		"another secret": sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes"), claims(nil), nil),
		"RS256":          rsaKey.token(t, "bob"),
		"garbage":        "a.b.c",
	} {
		_, _, _, err := i.Renew(tok)
		wantRefused(t, name, tok, err, "")
	}
}

func TestNewIssuerRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]auth.IssuerConfig{
		"no secret":    {TTL: time.Hour},
		"no ttl":       {Secret: secret},
		"ttl under 1s": {Secret: secret, TTL: 500 * time.Millisecond},
	} {
		if _, err := auth.NewIssuer(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
