package embedded_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/switchboard-dev/switchboard/db/embedded"
)

// openDirEnv makes the test binary open the directory it names and print
// the error: see TestOpenUnwritableDir.
const openDirEnv = "EMBEDDED_OPEN_DIR"

// nobody is the user and group that TestOpenUnwritableDir runs as when it
// runs as root, whom file modes do not stop.
const nobody = 65534

// An unwritable data directory is named as such, not blamed on another
// server: a directory of mode 0500 owned by the user who opens it.
func TestOpenUnwritableDir(t *testing.T) {
	if dir := os.Getenv(openDirEnv); dir != "" {
		_, err := embedded.Open(dir)
		fmt.Println(err)
		return
	}
	root, err := os.MkdirTemp("", "unwritable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	var msg string
	if os.Geteuid() != 0 {
		_, err := embedded.Open(dir)
		msg = fmt.Sprint(err)
	} else {
		msg = openAsNobody(t, root, dir)
	}
	t.Logf("Open says %q", msg)
	if strings.Contains(msg, "another server") || !strings.Contains(msg, dir) || !strings.Contains(msg, "permission denied") {
		t.Errorf("Open of a directory of mode 0500 says %q; want it named, with permission denied, and no other server blamed", msg)
	}
}

// openAsNobody runs Open(dir) in a copy of the test binary as the user
// nobody, who owns dir, and returns the error it printed. root must be a
// directory that holds dir.
func openAsNobody(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(root, "test.bin")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestOpenUnwritableDir$", "-test.count=1")
	cmd.Env = append(os.Environ(), openDirEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the test binary as nobody: %v\n%s", err, out)
	}
	msg, _, _ := strings.Cut(string(out), "\n")
	return msg
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// A data directory that cannot hold the store for another reason (here
// its database file is a directory) says that reason, not another server.
func TestOpenBadDataFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "switchboard.db"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := embedded.Open(dir)
	if msg := fmt.Sprint(err); err == nil || strings.Contains(msg, "another server") || !strings.Contains(msg, "is a directory") {
		t.Errorf("Open with a directory for its file says %q; want the reason, and no other server blamed", msg)
	}
}

// Only a lock held by another process says so: the store's own second
// Open of one directory waits for the lock, then names the cause.
func TestOpenLockedDir(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := embedded.Open(dir); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("a second Open of %s = %v; want it to say that another server holds it", dir, err)
	}
}
