package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// userOf turns verified claims into the caller: sub is the id, an object
// in the data claim is the data, and every claim is there for the rules.
func userOf(claims jwt.MapClaims) (api.User, time.Time, error) {
	sub, ok := claims["sub"].(string)
	if !ok || sub == "" {
		return api.User{}, time.Time{}, unauthenticated("the token has no subject (sub): a non-empty string naming the user is required")
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return api.User{}, time.Time{}, unauthenticated("the token has no valid expiry (exp)")
	}
	// The parser's leeway is for nbf and iat: a token is refused from its
	// exp on, so that a stream that ended at its token's expiry cannot
	// resume with it.
	if !time.Now().Before(exp.Time) {
		return api.User{}, time.Time{}, unauthenticated("the token has expired")
	}
	data, ok := claims["data"].(map[string]any)
	if !ok {
		data = map[string]any{}
	}
	return api.User{ID: sub, Data: data, Claims: claims}, exp.Time, nil
}

// MaxTokenBytes bounds a token: real ones are well under 2 KiB.
const MaxTokenBytes = 8 << 10

// checkShape refuses, before any parsing, a token longer than
// MaxTokenBytes or holding anything but the base64url alphabet and the
// dots between its parts. Base64 decoders skip some other bytes (line
// breaks): without this check one token could be sent in endless
// variants, each a new entry of the cache of verified tokens.
func checkShape(token string) error {
	if len(token) > MaxTokenBytes {
		return unauthenticated("the token is longer than %d bytes", MaxTokenBytes)
	}
	for i := range len(token) {
		switch c := token[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return unauthenticated("the token is not a well-formed JWT")
		}
	}
	return nil
}

// tokenID names a verified token for revocation (api.User.TokenID): its
// jti when it has a usable one, else a hash of the token itself.
func tokenID(claims jwt.MapClaims, token string) string {
	jti, _ := claims["jti"].(string)
	if jti != "" && len(jti) <= api.MaxJTIBytes && utf8.ValidString(jti) && !strings.Contains(jti, "\x00") {
		return jti
	}
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// refusal explains why golang-jwt refused a token, in a sentence that
// never repeats the token.
func refusal(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthenticated("the token is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenExpired):
		return unauthenticated("the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return unauthenticated("the token is not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return unauthenticated("the token's issuer (iss) is not the one this server accepts")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthenticated("the token's audience (aud) does not include this server")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthenticated("the token lacks a required claim (exp, and iss or aud when the server checks them)")
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return unauthenticated("the token's key (kid) is not in the identity provider's key set")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthenticated("the token's signature does not verify")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthenticated("the token cannot be verified: no key of this server matches it")
	}
	return unauthenticated("the token is not valid")
}

func unauthenticated(format string, args ...any) error {
	return &api.Error{Code: api.CodeUnauthenticated, Detail: fmt.Sprintf(format, args...)}
}
