package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
		{path("open", syscall.EACCES), "is not writable by the user this server runs as"},
		{path("open", syscall.EPERM), "is not writable by the user this server runs as"},
		{path("open", syscall.EROFS), "read-only file system"},
		{&fs.PathError{Op: "mkdir", Path: dir, Err: syscall.EROFS}, "read-only file system"},
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

// A permission error names the user the server runs as, by its ids, and
// the owner and mode of the directory that refused, with the fix: the
// nearest existing directory when the data directory is yet to be made.
// (A directory of another owner, with chown as the fix, is the e2e test
// TestImageBinary's: it takes root to make one.)
func TestDataDirErrorNamesUserAndOwner(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o750); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	// root belongs to the test's user: the fix is its mode, not its owner.
	owner := fmt.Sprintf("%s belongs to this user with mode %v", root, info.Mode())
	me := fmt.Sprintf("uid %d, gid %d", os.Getuid(), os.Getgid())
	chown := "chmod u+rwx " + root
	for _, c := range []struct {
		dir string
		err error
	}{
		{root, &fs.PathError{Op: "open", Path: filepath.Join(root, "switchboard.db"), Err: syscall.EACCES}},
		{filepath.Join(root, "a", "data"), &fs.PathError{Op: "mkdir", Path: filepath.Join(root, "a"), Err: syscall.EACCES}},
	} {
		msg := dataDirError(c.dir, c.err).Error()
		for _, want := range []string{c.dir, me, owner, chown, "DATA_DIR", "permission denied"} {
			if !strings.Contains(msg, want) {
				t.Errorf("dataDirError(%s, %v) = %q; want it to say %q", c.dir, c.err, msg, want)
			}
		}
	}
}
