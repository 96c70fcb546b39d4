package auth_test

import (
	"context"
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

	"github.com/switchboard-dev/switchboard/auth"
)

// BenchmarkVerify: one token checked, as every request does: "cached"
// when the same token came lately, "signature" for a token seen first.
// RS256 keys
// come from a JWK Set served over HTTP, fetched once and then cached: the
// benchmark fails if a verification fetches it again.
func BenchmarkVerify(b *testing.B) {
	b.Run("HS256", func(b *testing.B) {
		v, err := auth.New(context.Background(), auth.Config{Secret: secret})
		if err != nil {
			b.Fatal(err)
		}
		i, err := auth.NewIssuer(auth.IssuerConfig{Secret: secret, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		tok, _, err := i.Issue("alice", map[string]any{"role": "admin"})
		if err != nil {
			b.Fatal(err)
		}
		benchVerify(b, v, tok)
	})
	b.Run("RS256", func(b *testing.B) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			b.Fatal(err)
		}
		jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "rsa-1", ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
		if err != nil {
			b.Fatal(err)
		}
		var fetches atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
		}))
		defer srv.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		v, err := auth.New(ctx, auth.Config{JWKSURL: srv.URL})
		if err != nil {
			b.Fatal(err)
		}
		t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "data": map[string]any{"role": "admin"}})
		t.Header["kid"] = "rsa-1"
		tok, err := t.SignedString(key)
		if err != nil {
			b.Fatal(err)
		}
		before := fetches.Load()
		benchVerify(b, v, tok)
		if n := fetches.Load() - before; n != 0 {
			b.Fatalf("the key set was fetched %d times while verifying", n)
		}
	})
}

func benchVerify(b *testing.B, v *auth.Verifier, tok string) {
	ctx := context.Background()
	if u, _, err := v.Verify(ctx, tok); err != nil || u.ID != "alice" {
		b.Fatalf("user %+v, %v", u, err)
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signature", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.VerifyUncached(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
