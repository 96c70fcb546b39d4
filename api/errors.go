// Package api is Switchboard's vocabulary: records, changes, events, users,
// names and paths, the stable error codes, and the backend contracts (Store
// and Bus) that every backend implements. It does no I/O.
package api

import (
	"errors"
	"fmt"
)

// Code is a stable error code that clients switch on.
type Code string

// The stable error codes of the public contract.
const (
	CodeInvalidName          Code = "INVALID_NAME"
	CodeInvalidPath          Code = "INVALID_PATH"
	CodeInvalidJSON          Code = "INVALID_JSON"
	CodeInvalidParameter     Code = "INVALID_PARAMETER"
	CodeNotFound             Code = "NOT_FOUND"
	CodeMethodNotAllowed     Code = "METHOD_NOT_ALLOWED"
	CodeVersionConflict      Code = "VERSION_CONFLICT"
	CodePatchFailed          Code = "PATCH_FAILED"
	CodePayloadTooLarge      Code = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType Code = "UNSUPPORTED_MEDIA_TYPE"
	CodeUnauthenticated      Code = "UNAUTHENTICATED"
	CodeAuthUnavailable      Code = "AUTH_UNAVAILABLE"
	CodePermissionDenied     Code = "PERMISSION_DENIED"
	CodeNoRPCProvider        Code = "NO_RPC_PROVIDER"
	CodeRPCTimeout           Code = "RPC_TIMEOUT"
	CodeRPCError             Code = "RPC_ERROR"
	CodeRateLimited          Code = "RATE_LIMITED"
	CodeLimitExceeded        Code = "LIMIT_EXCEEDED"
	CodeUnavailable          Code = "UNAVAILABLE"
	CodeInternal             Code = "INTERNAL"
)

// Error is an error with a stable code and a sentence for humans. Fields
// holds extra members of the problem body, such as "currentVersion". Err is
// the cause of an INTERNAL error: logged, never shown to clients.
type Error struct {
	Code   Code
	Detail string
	Fields map[string]any
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Detail + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Internal wraps an unexpected error as an INTERNAL *Error.
func Internal(err error, format string, args ...any) *Error {
	return &Error{Code: CodeInternal, Detail: fmt.Sprintf(format, args...), Err: err}
}

// Errorf returns an *Error with code and a formatted detail.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// With returns a copy of e with one more problem field.
func (e *Error) With(key string, value any) *Error {
	c := e.without("")
	c.Fields[key] = value
	return c
}

// Without returns a copy of e without the problem field key.
func (e *Error) Without(key string) *Error { return e.without(key) }

func (e *Error) without(key string) *Error {
	c := *e
	c.Fields = make(map[string]any, len(e.Fields)+1)
	for k, v := range e.Fields {
		if k != key {
			c.Fields[k] = v
		}
	}
	return &c
}

// ErrorCode returns the code of err, or CodeInternal if it carries none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries code.
func IsCode(err error, code Code) bool { return err != nil && ErrorCode(err) == code }

// InvalidParameter returns an INVALID_PARAMETER error for the query
// parameter or header key, which its problem names in "parameter".
func InvalidParameter(key, format string, args ...any) *Error {
	return Errorf(CodeInvalidParameter, format, args...).With("parameter", key)
}

// NotFound returns a NOT_FOUND error for a record name.
func NotFound(name string) *Error { return Errorf(CodeNotFound, "record %q does not exist", name) }

// Conflict returns a VERSION_CONFLICT error that tells the current version
// (0 when the record does not exist).
func Conflict(name string, current int64) *Error {
	e := Errorf(CodeVersionConflict, "record %q is at version %d", name, current)
	return e.With("currentVersion", current)
}
