package client

import (
	"errors"
	"strconv"

	"github.com/switchboard-dev/switchboard/api"
)

// Error is an error answer of the server: its HTTP status and its
// problem+json code and detail. It unwraps to an *api.Error of the same
// code, so api.IsCode(err, api.CodeVersionConflict) works on it too.
type Error struct {
	Status int      // the HTTP status, such as 412
	Code   api.Code // the stable code, such as VERSION_CONFLICT
	Detail string   // a human sentence
	// CurrentVersion is the record's version a 412 VERSION_CONFLICT
	// reports (0 when the record does not exist or the answer has none).
	CurrentVersion int64
	// Index is the failing op of a batch, -1 for other errors.
	Index int
}

func (e *Error) Error() string {
	return strconv.Itoa(e.Status) + " " + string(e.Code) + ": " + e.Detail
}

// Unwrap returns the error as an *api.Error, its status in
// Fields["status"].
func (e *Error) Unwrap() error {
	return (&api.Error{Code: e.Code, Detail: e.Detail}).With("status", e.Status)
}

// IsConflict reports whether err is a 412 VERSION_CONFLICT: a conditional
// write met another version.
func IsConflict(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == api.CodeVersionConflict
}

// IsNotFound reports whether err is a 404 NOT_FOUND.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == api.CodeNotFound
}
