package embedded

import (
	"errors"
	"fmt"
	"io/fs"
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
// because the file system is read-only, is said to be unwritable; the
// wrapped error names the path and the system's reason.
func dataDirError(dir string, err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("data directory %s is in use: another server holds its lock (waited %v): %w", dir, lockTimeout, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	return fmt.Errorf("open data directory %s: %w", dir, err)
}
