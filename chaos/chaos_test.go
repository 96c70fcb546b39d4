package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// long is set by CHAOS=long: every scenario runs longer and larger.
var long = os.Getenv("CHAOS") == "long"

var (
	bin string         // the command, built once for the whole run
	pg  *pgtest.Server // the PostgreSQL server of the tests
)

// TestMain builds the command once, starts the PostgreSQL server of the
// tests (pgtest: the installed binaries, or TEST_DATABASE_URL), runs them
// and removes both.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "switchboard-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // the unprivileged user of a test may run it
	bin = filepath.Join(dir, "switchboard")
	goCmd, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: the go command:", err)
		return 1
	}
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: go build: %v\n%s", err, out)
		return 1
	}
	if pg, err = pgtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: pgtest:", err)
		return 1
	}
	defer pg.Remove()
	defer pg.Stop()
	return m.Run()
}

// pick returns the short value, or the long one under CHAOS=long.
func pick[T any](short, longer T) T {
	if long {
		return longer
	}
	return short
}

// patience is how long a test waits for an eventual thing.
const patience = 30 * time.Second
