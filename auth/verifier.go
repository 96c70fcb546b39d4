// Package auth verifies the tokens that callers present: JWTs signed with
// the server's own secret (HS256) or with an identity provider's keys,
// published as a JWK Set (RS256, ES256, EdDSA). It sits beside the engine
// rather than in it because fetching a JWK Set needs net/http.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// MinSecretBytes is the shortest JWT_SECRET that HS256 is safe with: a key
// at least as long as its hash (RFC 7518, 3.2). A shorter one is taken, and
// the server warns of it.
const MinSecretBytes = 32

// leeway is the clock skew allowed on nbf and iat between the issuer of a
// token and this server; none is allowed on exp (userOf).
const leeway = 5 * time.Second

// Config says which keys verify tokens and what their claims must hold.
// At least one of Secret and JWKSURL must be set.
type Config struct {
	// Secret verifies HS256 tokens, and only those.
	Secret []byte
	// JWKSURL is the address of an identity provider's JWK Set, whose keys
	// verify RS256, ES256 and EdDSA tokens.
	JWKSURL string
	// Issuer, when set, must be the tokens' iss.
	Issuer string
	// Audience, when set, must be among the tokens' aud.
	Audience string
	// RefreshEvery is the shortest time between two fetches of the JWK Set
	// caused by a token with an unknown kid; 0 means a minute.
	RefreshEvery time.Duration
	// Log takes the failures to fetch the JWK Set; nil discards them.
	Log *slog.Logger
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	hmac *jwt.Parser // HS256 against the secret; nil without one
	jwks *jwt.Parser // RS256, ES256, EdDSA against the JWK Set; nil without one

	secret  []byte
	keyfunc func(ctx context.Context) jwt.Keyfunc

	cache tokenCache // tokens verified lately (cache.go)
}

// hmacMethods and jwksMethods are the algorithms that each kind of key
// verifies. A token's alg picks the kind; a key never verifies another's.
var (
	hmacMethods = []string{jwt.SigningMethodHS256.Alg()}
	jwksMethods = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}
)

// New returns a verifier for cfg. With a JWKS URL it fetches the key set
// once, without failing when the set cannot be fetched (it is fetched again
// on the first token whose kid is unknown), and refreshes it hourly until
// ctx ends.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("auth: neither a secret nor a JWKS URL is configured")
	}
	v := &Verifier{}
	if len(cfg.Secret) > 0 {
		v.secret = cfg.Secret
		v.hmac = jwt.NewParser(parserOptions(cfg, hmacMethods)...)
	}
	if cfg.JWKSURL != "" {
		kf, err := newKeySet(ctx, cfg)
		if err != nil {
			return nil, err
		}
		v.keyfunc = kf
		v.jwks = jwt.NewParser(parserOptions(cfg, jwksMethods)...)
	}
	return v, nil
}

func parserOptions(cfg Config, methods []string) []jwt.ParserOption {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return opts
}

// Verify checks token and returns its user and its expiry. Every failure
// is an UNAUTHENTICATED *api.Error whose detail says what is wrong without
// repeating the token. The user's Data and Claims are shared by every
// request with the same token: read-only.
func (v *Verifier) Verify(ctx context.Context, token string) (api.User, time.Time, error) {
	if err := checkShape(token); err != nil {
		return api.User{}, time.Time{}, err
	}
	now := time.Now()
	if e, ok := v.cache.get(token, now); ok {
		return e.user, e.exp, nil
	}
	user, exp, err := v.verify(ctx, token)
	if err == nil {
		v.cache.put(token, user, exp, now)
	}
	return user, exp, err
}

// verify checks token's signature and claims.
func (v *Verifier) verify(ctx context.Context, token string) (api.User, time.Time, error) {
	alg, err := headerAlg(token)
	if err != nil {
		return api.User{}, time.Time{}, err
	}
	claims := jwt.MapClaims{}
	switch {
	case alg == jwt.SigningMethodHS256.Alg() && v.hmac != nil:
		_, err = v.hmac.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return v.secret, nil })
	case v.jwks != nil && slices.Contains(jwksMethods, alg):
		_, err = v.jwks.ParseWithClaims(token, claims, v.keyfunc(ctx))
	default:
		return api.User{}, time.Time{}, unauthenticated("the token's algorithm (alg) is not one that this server's keys verify; accepted: %s", v.accepted())
	}
	if err != nil {
		return api.User{}, time.Time{}, refusal(err)
	}
	user, exp, err := userOf(claims)
	user.TokenID = tokenID(claims, token)
	return user, exp, err
}

// accepted lists the algorithms that v verifies, for an error's detail.
func (v *Verifier) accepted() string {
	var algs []string
	if v.hmac != nil {
		algs = append(algs, hmacMethods...)
	}
	if v.jwks != nil {
		algs = append(algs, jwksMethods...)
	}
	return fmt.Sprint(algs)
}

// headerAlg reads the alg of token's header, without verifying anything.
func headerAlg(token string) (string, error) {
	t, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		return "", unauthenticated("the token is not a well-formed JWT")
	}
	alg, _ := t.Header["alg"].(string)
	return alg, nil
}
