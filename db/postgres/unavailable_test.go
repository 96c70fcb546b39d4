package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-dev/switchboard/api"
)

// TestUnavailable: errors of a database that cannot take the query now
// are UNAVAILABLE (retry); its answers to the query stay as they are.
func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true}, // admin shutdown: terminating connection
		{&pgconn.PgError{Code: "57P03"}, true}, // the database system is starting up
		{&pgconn.PgError{Code: "53300"}, true}, // too many clients already
		{&pgconn.PgError{Code: "53100"}, true}, // disk full
		{&pgconn.PgError{Code: "08006"}, true}, // connection failure
		{errors.New("dial tcp: connection refused"), true},
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation
		{&pgconn.PgError{Code: "57014"}, false}, // query canceled
		{&pgconn.PgError{Code: "40001"}, false}, // serialization failure
		{context.Canceled, false},
		{api.ErrTrimmed, false},
	} {
		err := tc.err
		unavailable(&err)
		if got := api.IsCode(err, api.CodeUnavailable); got != tc.want {
			t.Errorf("%v: unavailable %v, want %v", tc.err, got, tc.want)
		}
	}
}
