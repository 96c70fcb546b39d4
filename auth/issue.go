package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer signs the server's own tokens: HS256 with JWT_SECRET, so that the
// Verifier of the same secret accepts them. It is safe for concurrent use.
type Issuer struct {
	secret   []byte
	ttl      time.Duration
	issuer   string // iss, when the verifier requires one
	audience string // aud, when the verifier requires one
	parser   *jwt.Parser
	now      func() time.Time
}

// IssuerConfig says how the server signs its tokens.
type IssuerConfig struct {
	// Secret signs HS256 tokens; it is the verifier's secret.
	Secret []byte
	// TTL is how long an issued token is valid; at least a second, as a
	// token's exp counts whole seconds.
	TTL time.Duration
	// Issuer and Audience, when set (JWT_ISSUER, JWT_AUDIENCE), go into
	// the iss and aud claims: the verifier requires them of every token.
	Issuer, Audience string
}

// NewIssuer returns an issuer for cfg.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("auth: issuing tokens needs a secret")
	}
	if cfg.TTL < time.Second {
		return nil, errors.New("auth: the lifetime of issued tokens must be at least 1s")
	}
	return &Issuer{
		secret: cfg.Secret, ttl: cfg.TTL, issuer: cfg.Issuer, audience: cfg.Audience,
		parser: jwt.NewParser(parserOptions(Config{Issuer: cfg.Issuer, Audience: cfg.Audience}, hmacMethods)...),
		now:    time.Now,
	}, nil
}

// Issue signs a new token for the user id, whose data claim is data (what
// permission rules see as user.data; nil is {}), and returns it with its
// expiry. Every token has its own jti, 128 random bits.
func (i *Issuer) Issue(id string, data map[string]any) (string, time.Time, error) {
	if id == "" {
		return "", time.Time{}, errors.New("auth: a token needs a subject")
	}
	if data == nil {
		data = map[string]any{}
	}
	now := i.now()
	// exp counts whole seconds: the expiry announced is the one signed.
	exp := now.Add(i.ttl).Truncate(time.Second)
	claims := jwt.MapClaims{
		"sub":  id,
		"iat":  now.Unix(),
		"exp":  exp.Unix(),
		"jti":  newJTI(),
		"data": data,
	}
	if i.issuer != "" {
		claims["iss"] = i.issuer
	}
	if i.audience != "" {
		claims["aud"] = i.audience
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign a token: %w", err)
	}
	return token, exp, nil
}

// Renew signs a new token of the same identity as token (its sub, and its
// data claim), with a new jti and a new expiry. Only a valid token signed
// with the issuer's secret is renewed: a token of an identity provider
// (JWKS_URL) is refused, as renewing it here would outlive the provider's
// own expiry and revocation. The error is UNAUTHENTICATED and never
// repeats the token.
func (i *Issuer) Renew(token string) (string, time.Time, string, error) {
	alg, err := headerAlg(token)
	if err != nil {
		return "", time.Time{}, "", err
	}
	if alg != jwt.SigningMethodHS256.Alg() {
		return "", time.Time{}, "", unauthenticated("only tokens that this server signs (HS256 with JWT_SECRET) can be refreshed; renew a token of the identity provider with the provider")
	}
	claims := jwt.MapClaims{}
	if _, err := i.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return i.secret, nil }); err != nil {
		return "", time.Time{}, "", refusal(err)
	}
	user, _, err := userOf(claims)
	if err != nil {
		return "", time.Time{}, "", err
	}
	fresh, exp, err := i.Issue(user.ID, user.Data)
	return fresh, exp, user.ID, err
}

// newJTI returns 128 random bits, URL-safe.
func newJTI() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
