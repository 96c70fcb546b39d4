package api

import (
	"context"
	"time"
	"unicode"
	"unicode/utf8"
)

// PresenceStore keeps who is online, across every instance: a row per
// (instance, user) with an expiry, written by the instance that holds the
// user's streams. A user is online while any of their rows has not
// expired; the rows of an instance killed without closing its streams
// expire by themselves. Every time comes from the caller (the instance's
// clock), never from the store's own.
//
// Methods are safe for concurrent use. The calls that write the rows of
// one instance are expected to come from one writer of that instance at a
// time (realtime.Presence has one); writers of different instances never
// touch the same rows.
type PresenceStore interface {
	// PutPresence creates or renews the rows of instance for users, each
	// expiring at expires (which may shorten an expiry). A user listed
	// twice counts once; no users is no change.
	PutPresence(ctx context.Context, instance string, users []string, expires time.Time) error
	// RemovePresence removes the rows of instance for users; rows that do
	// not exist are no error.
	RemovePresence(ctx context.Context, instance string, users []string) error
	// Online returns, in id order (byte order) and each once, the users
	// that have a row expiring after now. When users is not nil, only
	// those among users (an empty users gives none).
	Online(ctx context.Context, now time.Time, users []string) ([]string, error)
	// ExpirePresence removes the rows that expire at or before now: they
	// count no more, and need not be kept.
	ExpirePresence(ctx context.Context, now time.Time) error
}

// MaxUserIDBytes bounds the length of a user id that presence counts and
// that GET /presence?user= accepts.
const MaxUserIDBytes = 256

// ValidateUserID checks that id can be a presence user: 1 to
// MaxUserIDBytes bytes of UTF-8 without control characters (so that every
// backend can store it as text). A signed-in user whose id is not one is
// never counted online; an anonymous user ("") is not presence either.
func ValidateUserID(id string) error {
	if id == "" || len(id) > MaxUserIDBytes || !utf8.ValidString(id) {
		return Errorf(CodeInvalidParameter, "a user id is 1 to %d bytes of UTF-8", MaxUserIDBytes)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return Errorf(CodeInvalidParameter, "a user id has no control characters")
		}
	}
	return nil
}
