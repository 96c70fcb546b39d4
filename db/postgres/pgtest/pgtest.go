// Package pgtest gives tests a real PostgreSQL server: the one that
// TEST_DATABASE_URL points at, or else one that it starts itself from the
// installed binaries (initdb, postgres) in a temporary directory, on a free
// port of 127.0.0.1, once per test binary. Each test gets a database of its
// own from NewDatabase.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Missing binaries fail the tests (they are never skipped): install
// Debian's postgresql package (the Makefile does).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// server is the server of this test binary, set by Main.
var (
	mu     sync.Mutex
	server *Server
	dbSeq  atomic.Int64
)

// Server is a PostgreSQL server for tests: an external one
// (TEST_DATABASE_URL) or one that this package runs.
type Server struct {
	// URL is a connection URL to the server's maintenance database.
	URL string

	// Set for a server this package runs.
	bin, dir, data string
	port           int
	cred           *syscall.Credential
	proc           *exec.Cmd
	exited         chan struct{}
	durable        bool // fsync and synchronous commits on (StartDurable)
}

// Main starts the server (or takes TEST_DATABASE_URL), runs the tests and
// stops the server, then exits with the tests' code. A server that cannot
// be started fails the run.
func Main(m *testing.M) {
	s, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: pgtest: %v\n", err)
		os.Exit(1)
	}
	mu.Lock()
	server = s
	mu.Unlock()
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stop postgres: %v\n", err)
	}
	s.Remove()
	os.Exit(code)
}

// Current returns the server that Main started; it fails t if there is none.
func Current(t testing.TB) *Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if server == nil {
		t.Fatal("pgtest: no server: call pgtest.Main(m) from TestMain")
	}
	return server
}

// NewDatabase creates an empty database on the current server and returns
// its URL; the database is dropped when t ends (after the cleanups that
// t registered later, which close what uses it).
func NewDatabase(t testing.TB) string {
	t.Helper()
	return Current(t).NewDatabase(t)
}

// Start returns the server of TEST_DATABASE_URL when it is set, else
// initialises and starts a new one in a temporary directory.
func Start() (*Server, error) {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		s := &Server{URL: u}
		if err := s.waitReady(30 * time.Second); err != nil {
			return nil, fmt.Errorf("TEST_DATABASE_URL: %w", err)
		}
		return s, nil
	}
	return startNew(false)
}

// StartDurable initialises and starts a new server in a temporary
// directory, as Start does, but with fsync, synchronous_commit and
// full_page_writes on (PostgreSQL's defaults), for benchmarks of durable
// commits. It ignores TEST_DATABASE_URL.
func StartDurable() (*Server, error) { return startNew(true) }

// startNew initialises a server in a new temporary directory and starts
// it on a free port (trying four ports at most).
func startNew(durable bool) (*Server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data"), durable: durable}
	if err := s.init(); err != nil {
		s.Remove()
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		err = s.startOnFreePort()
		if err == nil || attempt == 3 {
			break
		}
	}
	if err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// Pid returns the process id of the postmaster of a server that this
// package runs (its backends are in its process group), or 0.
func (s *Server) Pid() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.Process.Pid
}

// findBinaries returns the directory of initdb and postgres: on PATH, or
// the newest under /usr/lib/postgresql (Debian keeps them off PATH).
func findBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL's initdb and postgres were not found on PATH or in /usr/lib/postgresql/*/bin: " +
		"install PostgreSQL (Debian: apt-get install postgresql; `make test` does it) or set TEST_DATABASE_URL")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// init runs initdb, as an unprivileged user when running as root
// (PostgreSQL refuses to run as root).
func (s *Server) init() error {
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			return err
		}
		s.cred = cred
		if err := os.Chown(s.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	cmd := s.command("initdb", "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// unprivileged returns the credentials of the postgres user, or of nobody.
func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root, and there is no postgres or nobody user to run PostgreSQL as")
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	return cmd
}

func (s *Server) startOnFreePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	return s.Restart()
}

// Restart starts the server again after Stop, on the same port and data;
// only for a server that this package runs.
func (s *Server) Restart() error {
	if s.bin == "" {
		return errors.New("pgtest: cannot start an external server (TEST_DATABASE_URL)")
	}
	logf, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + s.dir,
		"-c", "max_connections=300", "-c", "shared_buffers=64MB"}
	if !s.durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := s.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.proc, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
		return fmt.Errorf("postgres did not start: %w\n%s", err, log)
	}
	return nil
}

// Stop stops a server that this package runs (fast shutdown: open
// connections are cut) and waits for it to exit; the data stays for
// Restart. On an external server it does nothing.
func (s *Server) Stop() error { return s.signal(syscall.SIGINT) }

// Crash stops a server that this package runs the way a crash would
// (immediate shutdown: no checkpoint, and WAL not yet written to the
// operating system is lost) and waits for it to exit; Restart recovers.
func (s *Server) Crash() error { return s.signal(syscall.SIGQUIT) }

// signal sends sig to the postmaster and waits for it to exit, killing it
// after 30 s.
func (s *Server) signal(sig syscall.Signal) error {
	if s.proc == nil {
		return nil
	}
	p := s.proc
	s.proc = nil
	p.Process.Signal(sig)
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		p.Process.Kill()
		<-s.exited
		return errors.New("postgres did not stop within 30s; killed")
	}
}

// Remove deletes the server's directory (after Stop).
func (s *Server) Remove() {
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		if s.exited != nil {
			select {
			case <-s.exited:
				return errors.New("postgres exited")
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NewDatabase creates an empty database and returns its URL; it is
// dropped (cutting any connection left) when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	s.exec(t, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.URL)
		if err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.DatabaseURL(t, name)
}

// DatabaseURL returns the URL of the database name on the server.
func (s *Server) DatabaseURL(t testing.TB, name string) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("pgtest: server URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Exec runs sql on the server's maintenance database, failing t on error.
func (s *Server) exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", strings.SplitN(sql, " ", 3)[:2], err)
	}
}
