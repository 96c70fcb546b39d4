package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is the command running as an operator runs it.
type proc struct {
	cmd    *exec.Cmd
	URL    string
	out    syncBuffer    // stdout and stderr
	exited chan struct{} // closed once it has exited
	err    error         // its exit status, once exited
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// launch runs the command with env (and nothing else of the test's
// environment) on 127.0.0.1:0; it is killed when the test ends. With
// wrap, wrap runs with the command's path as its last argument (a shell
// that sets a limit, then execs it).
func launch(t testing.TB, env map[string]string, wrap ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(command(t)), exited: make(chan struct{})}
	if len(wrap) > 0 {
		p.cmd = exec.Command(wrap[0], append(wrap[1:], command(t))...)
	}
	p.cmd.Env = []string{"HOST=127.0.0.1", "PORT=0"}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(pr, &p.out))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.exited })
	return p
}

// start launches the command and waits until it listens and is ready.
func start(t testing.TB, env map[string]string) *proc {
	t.Helper()
	p := launch(t, env)
	if err := p.waitListening(patience); err != nil {
		t.Fatal(err)
	}
	p.waitReady(t, http.StatusOK)
	return p
}

// waitListening waits for the "listening" line of the log.
func (p *proc) waitListening(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.out.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				p.URL = l.Addr
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("the command exited at start: %v\n%s", p.err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the command did not listen in %v\n%s", d, p.out.String())
}

// waitReady waits until /readyz answers want.
func (p *proc) waitReady(t testing.TB, want int) {
	t.Helper()
	got := 0
	for end := time.Now().Add(patience); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
		if got = statusOf(p.URL + "/readyz"); got == want {
			return
		}
	}
	t.Fatalf("%s/readyz answered %d for %v, want %d\n%.4000s", p.URL, got, patience, want, p.out.String())
}

// statusOf returns the status of a GET, or 0 if it got no answer.
func statusOf(url string) int {
	resp, err := quick.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// exitCode waits for the process to exit by itself and returns its
// status: -1 when a signal ended it.
func (p *proc) exitCode(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("the command did not exit within %v\n%s", d, p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("the command: %v", p.err)
	}
	return 0
}

// usage is a sample of a process's resources.
type usage struct {
	RSS        int64 // bytes
	FDs        int
	Goroutines int
}

// sample reads the process's RSS and open files from /proc and its
// goroutines from /metrics.
func (p *proc) sample(t testing.TB) usage {
	t.Helper()
	u, err := p.trySample()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// trySample is sample for goroutines: it returns the error.
func (p *proc) trySample() (usage, error) {
	var u usage
	pid := p.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			u.RSS = kb << 10
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return u, err
	}
	u.FDs = len(fds)
	g, err := p.tryMetric("go_goroutines")
	u.Goroutines = int(g)
	return u, err
}

// metric returns the value of an unlabelled metric of /metrics, or -1.
func (p *proc) metric(t testing.TB, name string) float64 {
	t.Helper()
	v, err := p.tryMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (p *proc) tryMetric(name string) (float64, error) {
	resp, err := quick.Get(p.URL + "/metrics")
	if err != nil {
		return -1, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f, nil
		}
	}
	return -1, nil
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds, %d goroutines", float64(u.RSS)/(1<<20), u.FDs, u.Goroutines)
}
