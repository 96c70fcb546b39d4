package embedded

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	bolterrors "go.etcd.io/bbolt/errors"
)

// Each reason an open fails for gets its own words, with the directory
// named; only a lock timeout blames another server. A read-only file
// system cannot be made in a test (no mount as a user, none in CI), so
// its error is given here as the system returns it.
func TestDataDirError(t *testing.T) {
	const dir = "/srv/data"
	path := func(op string, err error) error {
		return &fs.PathError{Op: op, Path: dir + "/switchboard.db", Err: err}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{bolterrors.ErrTimeout, "another server holds its lock"},
		{path("open", syscall.EACCES), "is not writable"},
		{path("open", syscall.EPERM), "is not writable"},
		{path("open", syscall.EROFS), "is not writable"},
		{&fs.PathError{Op: "mkdir", Path: dir, Err: syscall.EROFS}, "is not writable"},
		{path("open", syscall.EISDIR), "open data directory"},
		{errors.New("write-ahead log: read: input/output error"), "open data directory"},
	} {
		msg := dataDirError(dir, c.err).Error()
		if !strings.Contains(msg, dir) || !strings.Contains(msg, c.want) || !strings.Contains(msg, c.err.Error()) ||
			(c.err != bolterrors.ErrTimeout && strings.Contains(msg, "another server")) {
			t.Errorf("dataDirError(%v) = %q; want the directory, %q and the cause", c.err, msg, c.want)
		}
	}
}
