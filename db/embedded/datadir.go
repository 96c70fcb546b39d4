package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// lockTimeout is how long Open waits for the lock of the bbolt file, which
// one process holds at a time, before it gives up.
const lockTimeout = time.Second

// dataDirError says why the store could not open dir, in terms that an
// operator can act on. Only bbolt's ErrTimeout means that another process
// (another server on the same directory, most likely) holds the file's
// lock. A directory or file that the server may not write, by its mode or
// because the file system is read-only, is said to be unwritable, with the
// user that the server runs as and the owner and mode of what refused it:
// a volume mounted for root under an image that runs as nonroot is the
// usual cause. A file whose meta pages both fail is called damaged. The
// wrapped error names the path and the system's reason.
func dataDirError(dir string, err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("data directory %s is in use: another server holds its lock (waited %v): %w", dir, lockTimeout, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("data directory %s is not writable: it is on a read-only file system; set DATA_DIR to a directory on a writable one: %w", dir, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("data directory %s is not writable by the user this server runs as, %s; %s: %w",
			dir, currentUser(), ownerAdvice(dir, err), err)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return fmt.Errorf("open data directory %s: %s is not a bbolt file of this version, or both its meta pages are damaged; restore the data directory from a backup: %w",
			dir, filepath.Join(dir, "switchboard.db"), err)
	}
	return fmt.Errorf("open data directory %s: %w", dir, err)
}

// currentUser names the process's user as "name (uid U, gid G)", or
// "uid U, gid G" where no user database says its name (a static binary in
// an image without /etc/passwd).
func currentUser() string {
	uid, gid := os.Getuid(), os.Getgid()
	ids := fmt.Sprintf("uid %d, gid %d", uid, gid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return fmt.Sprintf("%s (%s)", u.Username, ids)
	}
	return ids
}

// ownerAdvice says who owns the path that refused (the file named by err,
// else dir, else the nearest directory above dir that exists) and how to
// fix it.
func ownerAdvice(dir string, err error) string {
	path := dir
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path != "" {
		path = pe.Path
		if pe.Op == "mkdir" || pe.Op == "open" && isMissing(path) { // what refused is the directory it goes in
			path = filepath.Dir(path)
		}
	}
	for isMissing(path) && filepath.Dir(path) != path {
		path = filepath.Dir(path)
	}
	uid, gid := os.Getuid(), os.Getgid()
	chown := fmt.Sprintf("give it to this user (chown %d:%d %s) or set DATA_DIR to a directory this user may write", uid, gid, path)
	info, statErr := os.Stat(path)
	if statErr != nil {
		return chown
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("%s has mode %v: %s", path, info.Mode(), chown)
	}
	if int(st.Uid) == uid {
		return fmt.Sprintf("%s belongs to this user with mode %v: make it writable (chmod u+rwx %s) or set DATA_DIR to a directory this user may write",
			path, info.Mode(), path)
	}
	return fmt.Sprintf("%s belongs to uid %d, gid %d with mode %v: %s", path, st.Uid, st.Gid, info.Mode(), chown)
}

func isMissing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}
