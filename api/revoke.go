package api

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// Revoked tokens. A token is revoked by its id (the jti claim) until it
// expires: the Store keeps a row per jti with that time, shared by every
// instance, and each instance keeps the live set in memory (so that
// checking a token is a map lookup): it reads the set at start, then only
// what was revoked after the last position it read, when TopicRevoked
// wakes it. A token without a jti cannot be revoked.

// TopicRevoked is the Bus topic that announces, after the Store has it,
// that a token was revoked. It only wakes: the revocations are read from
// the Store (Revocations.Revocations after the last position read).
const TopicRevoked = "revoked"

// MaxJTIBytes bounds the id of a revoked token.
const MaxJTIBytes = 1024

// Revocation is one revoked token: its id, until when it is refused, and
// its position among revocations.
type Revocation struct {
	Seq   int64
	JTI   string
	Until time.Time
}

// Revocations keeps the revoked tokens of every instance. It is safe for
// concurrent use. Every Store implements it and passes the db/dbtest suite.
type Revocations interface {
	// Revoke stores that the token jti is refused until until. It gets a
	// position after every revocation stored before; revoking a jti again
	// keeps the later of the two times and moves the jti to a new position,
	// so that a reader past its old one learns the new time. An empty jti,
	// one longer than MaxJTIBytes, not UTF-8 or holding a NUL, or a zero
	// until: INVALID_PARAMETER, and nothing is stored.
	Revoke(ctx context.Context, jti string, until time.Time) error
	// Revocations returns up to limit revocations whose position is after
	// after, in position order (the latest of each jti). Positions follow
	// commit order: a revocation stored later never gets a position at or
	// below one already returned, so a reader that remembers the last
	// position it read and asks again from it misses nothing (except what
	// TrimRevocations removed meanwhile).
	Revocations(ctx context.Context, after int64, limit int) ([]Revocation, error)
	// TrimRevocations removes the revocations whose Until is before
	// before: their tokens have expired, and refusing them is the
	// verifier's job. Positions are never reused.
	TrimRevocations(ctx context.Context, before time.Time) error
}

// CheckRevocation returns the INVALID_PARAMETER error that Revoke answers
// for jti and until, or nil when they may be stored. Every backend checks
// through it, so that each refuses the same.
func CheckRevocation(jti string, until time.Time) error {
	switch {
	case jti == "":
		return InvalidParameter("jti", "a token without an id (jti) cannot be revoked")
	case len(jti) > MaxJTIBytes:
		return InvalidParameter("jti", "a token id (jti) of %d bytes is longer than %d", len(jti), MaxJTIBytes)
	case !utf8.ValidString(jti) || strings.IndexByte(jti, 0) >= 0:
		return InvalidParameter("jti", "a token id (jti) must be UTF-8 text without NUL")
	case until.IsZero():
		return InvalidParameter("until", "a revocation needs the time its token expires")
	}
	return nil
}
