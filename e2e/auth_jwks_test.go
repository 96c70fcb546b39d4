package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// TestAuthJWKS: a token-mode server with an identity provider's JWKS_URL,
// JWT_ISSUER and JWT_AUDIENCE serves the provider's RS256 tokens and
// refuses ones for another audience; the provider may be down when the
// server starts.
func TestAuthJWKS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgRS256}})
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	}))
	t.Cleanup(idp.Close)

	srv := startServer(t, map[string]string{"AUTH_MODE": "token", "JWKS_URL": idp.URL,
		"JWT_ISSUER": "https://id.example", "JWT_AUDIENCE": "switchboard"})
	up.Store(true)

	sign := func(aud string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"sub": "erin", "iss": "https://id.example", "aud": aud, "exp": time.Now().Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if st, _, b := doChecked(t, srv.URL, "PUT", "/records/idp", "application/json", `1`, "Authorization", "Bearer "+sign("switchboard")); st != http.StatusCreated {
		t.Fatalf("PUT with the provider's token: %d %s", st, b)
	}
	if st, _, b := doChecked(t, srv.URL, "GET", "/records/idp", "", "", "Authorization", "Bearer "+sign("another-app")); st != http.StatusUnauthorized {
		t.Errorf("another audience: %d %s", st, b)
	}
}
