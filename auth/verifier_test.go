package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/auth"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// sign signs claims with method and key, and fails t on error.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// claims are valid claims for alice, with changes applied.
func claims(changes map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iss": "https://id.example", "aud": "switchboard"}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// wantRefused checks that err is UNAUTHENTICATED, with a detail holding
// want and never the token.
func wantRefused(t *testing.T, name, token string, err error, want string) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeUnauthenticated {
		t.Errorf("%s: error %v, want UNAUTHENTICATED", name, err)
		return
	}
	if !strings.Contains(e.Detail, want) {
		t.Errorf("%s: detail %q, want one with %q", name, e.Detail, want)
	}
	if token != "" && strings.Contains(e.Error(), token) {
		t.Errorf("%s: the error repeats the token", name)
	}
}

func TestVerifySecret(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Config{Secret: secret, Issuer: "https://id.example", Audience: "switchboard"})
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil), nil)

	for _, tc := range []struct {
		name, token, refused string // refused: a part of the detail, "" when valid
	}{
		{"good", sign(t, jwt.SigningMethodHS256, secret, claims(nil), nil), ""},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), nil), "expired"},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"exp": nil}), nil), "required claim"},
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes"), claims(nil), nil), "signature"},
		{"tampered", tamper(sign(t, jwt.SigningMethodHS256, secret, claims(nil), nil)), "signature"},
		{"alg none", none, "algorithm"},
		{"HS384", sign(t, jwt.SigningMethodHS384, secret, claims(nil), nil), "algorithm"},
		{"RS256 without a JWKS", sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil), nil), "algorithm"},
		{"HS256 with the RSA public key", sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil), nil), "signature"},
		{"no sub", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"sub": nil}), nil), "subject"},
		{"empty sub", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"sub": ""}), nil), "subject"},
		{"number sub", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"sub": 7}), nil), "subject"},
		{"wrong iss", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"iss": "https://evil.example"}), nil), "issuer"},
		{"no iss", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"iss": nil}), nil), "claim"},
		{"wrong aud", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"aud": "other"}), nil), "audience"},
		{"aud list", sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"aud": []string{"other", "switchboard"}}), nil), ""},
		{"not a JWT", "hello", "well-formed"},
		{"empty", "", "well-formed"},
	} {
		u, exp, err := v.Verify(context.Background(), tc.token)
		switch {
		case tc.refused != "":
			wantRefused(t, tc.name, tc.token, err, tc.refused)
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case u.ID != "alice" || time.Until(exp) < 59*time.Minute || u.Claims["iss"] != "https://id.example":
			t.Errorf("%s: user %+v, exp %v", tc.name, u, exp)
		}
	}
}

// tamper changes the payload of a signed token, keeping its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	fake, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(map[string]any{"sub": "mallory"})).SigningString()
	return fake + "." + parts[2]
}

func TestUserData(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data any
		want int // keys in user.Data
	}{
		{"object", map[string]any{"role": "admin", "team": "blue"}, 2},
		{"string", "admin", 0},
		{"array", []string{"admin"}, 0},
		{"absent", nil, 0},
	} {
		tok := sign(t, jwt.SigningMethodHS256, secret, claims(map[string]any{"data": tc.data}), nil)
		u, _, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if u.Data == nil || len(u.Data) != tc.want {
			t.Errorf("%s: data %#v", tc.name, u.Data)
		}
		if tc.want == 2 && u.Data["role"] != "admin" {
			t.Errorf("%s: data %#v", tc.name, u.Data)
		}
		if u.Claims["sub"] != "alice" || (tc.data != nil && u.Claims["data"] == nil) {
			t.Errorf("%s: claims %#v", tc.name, u.Claims)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]auth.Config{
		"nothing": {},
	} {
		if _, err := auth.New(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
