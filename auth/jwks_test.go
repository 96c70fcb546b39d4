package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/auth"
)

// provider is an identity provider's JWK Set, served over HTTP. Keys can
// be rotated in, and the set can be down.
type provider struct {
	mu   sync.Mutex
	keys []jwkset.JWKMarshal
	down bool
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(jwkset.JWKSMarshal{Keys: p.keys})
}

// publish adds pub's public key to the set, under kid.
func (p *provider) publish(t *testing.T, kid string, alg jwkset.ALG, pub crypto.PublicKey) {
	t.Helper()
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, jwk.Marshal())
}

func (p *provider) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// newProvider serves a provider, and returns it with a verifier over it
// that refreshes on an unknown kid at most every 10ms.
func newProvider(t *testing.T, down bool) (*provider, *auth.Verifier) {
	t.Helper()
	p := &provider{down: down}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := auth.New(ctx, auth.Config{JWKSURL: srv.URL, RefreshEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return p, v
}

type signer struct {
	kid    string
	alg    jwkset.ALG
	method jwt.SigningMethod
	key    crypto.Signer
}

func signers(t *testing.T) []signer {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []signer{
		{"rsa-1", jwkset.AlgRS256, jwt.SigningMethodRS256, rsaKey},
		{"ec-1", jwkset.AlgES256, jwt.SigningMethodES256, ecKey},
		{"ed-1", jwkset.AlgEdDSA, jwt.SigningMethodEdDSA, edKey},
	}
}

func (s signer) token(t *testing.T, sub string) string {
	return sign(t, s.method, s.key, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}, map[string]any{"kid": s.kid})
}

func TestJWKSKeysVerify(t *testing.T) {
	p, v := newProvider(t, false)
	ss := signers(t)
	for _, s := range ss {
		p.publish(t, s.kid, s.alg, s.key.Public())
	}
	for _, s := range ss {
		u, _, err := v.Verify(context.Background(), s.token(t, "bob"))
		if err != nil || u.ID != "bob" {
			t.Errorf("%s: user %+v, %v", s.method.Alg(), u, err)
		}
	}

	// A key that is not the published one, under a published kid.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := signer{"rsa-1", jwkset.AlgRS256, jwt.SigningMethodRS256, other}.token(t, "bob")
	_, _, err := v.Verify(context.Background(), forged)
	wantRefused(t, "forged", forged, err, "signature")

	// HS256 with the published RSA key's bytes as the secret: no secret is
	// configured, and a public key never verifies HS256.
	der, _ := x509.MarshalPKIXPublicKey(ss[0].key.Public())
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for name, key := range map[string][]byte{"PEM": pemKey, "DER": der} {
		tok := sign(t, jwt.SigningMethodHS256, key, claims(nil), map[string]any{"kid": "rsa-1"})
		_, _, err := v.Verify(context.Background(), tok)
		wantRefused(t, "HS256 with the RSA key's "+name, tok, err, "algorithm")
	}

	// ES256 claimed, RSA key named.
	tok := sign(t, jwt.SigningMethodES256, ss[1].key, claims(nil), map[string]any{"kid": "rsa-1"})
	_, _, err = v.Verify(context.Background(), tok)
	wantRefused(t, "ES256 under an RSA kid", tok, err, "")
}

// TestJWKSUnknownKid: a token with a kid the set lacks is refused; once the
// provider publishes the key, the next token verifies (the set is fetched
// again on an unknown kid).
func TestJWKSUnknownKid(t *testing.T) {
	p, v := newProvider(t, false)
	ss := signers(t)
	p.publish(t, ss[0].kid, ss[0].alg, ss[0].key.Public())
	tok := ss[1].token(t, "carol")
	_, _, err := v.Verify(context.Background(), tok)
	wantRefused(t, "unknown kid", tok, err, "kid")

	p.publish(t, ss[1].kid, ss[1].alg, ss[1].key.Public())
	time.Sleep(20 * time.Millisecond) // past the refresh rate limit
	if u, _, err := v.Verify(context.Background(), ss[1].token(t, "carol")); err != nil || u.ID != "carol" {
		t.Fatalf("after the rotation: user %+v, %v", u, err)
	}
}

// TestJWKSDownAtStart: a provider that is down when the server starts is
// not fatal; tokens verify once it is up.
func TestJWKSDownAtStart(t *testing.T) {
	p, v := newProvider(t, true)
	s := signers(t)[2]
	p.publish(t, s.kid, s.alg, s.key.Public())
	tok := s.token(t, "dave")
	_, _, err := v.Verify(context.Background(), tok)
	wantRefused(t, "while down", tok, err, "kid")

	p.setDown(false)
	time.Sleep(20 * time.Millisecond)
	if u, _, err := v.Verify(context.Background(), tok); err != nil || u.ID != "dave" {
		t.Fatalf("once up: user %+v, %v", u, err)
	}
}
