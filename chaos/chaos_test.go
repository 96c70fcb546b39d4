package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

// long is set by CHAOS=long: every scenario runs longer and larger.
var long = os.Getenv("CHAOS") == "long"

// The command and the PostgreSQL server are made once, when a test first
// needs them (a fuzzing run needs neither), and removed by TestMain.
var (
	binDir  string
	pgMu    sync.Mutex
	pgSrv   *pgtest.Server
	binOnce = sync.OnceValues(build)
)

// TestMain runs the tests, then stops the PostgreSQL server and removes
// the command, if they were made.
func TestMain(m *testing.M) {
	code := m.Run()
	pgMu.Lock()
	if pgSrv != nil {
		pgSrv.Stop()
		pgSrv.Remove()
	}
	pgMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// build builds the command at the repository's root.
func build() (string, error) {
	dir, err := os.MkdirTemp("", "switchboard-chaos-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "switchboard")
	goCmd, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		return "", fmt.Errorf("the go command: %w", err)
	}
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// command returns the command, built once.
func command(t testing.TB) string {
	t.Helper()
	bin, err := binOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// postgres returns the PostgreSQL server of the tests (pgtest: from the
// installed binaries, or TEST_DATABASE_URL), started once.
func postgres(t testing.TB) *pgtest.Server {
	t.Helper()
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgSrv == nil {
		s, err := pgtest.Start()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		pgSrv = s
	}
	return pgSrv
}

// ownPostgres returns the server of postgres(t) when this package runs
// it (it can be stopped and started again), and skips the test on an
// external one (TEST_DATABASE_URL).
func ownPostgres(t testing.TB) *pgtest.Server {
	t.Helper()
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("TEST_DATABASE_URL: the database server is not this test's to stop or fill")
	}
	return postgres(t)
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
