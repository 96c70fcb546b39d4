package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCommand builds the command at the repository's root and runs it as
// an operator does: it serves the openapi.yaml it embeds, byte for byte,
// and on SIGTERM shuts down gracefully and exits 0. The other tests start
// servers through server.Run, which never sees the embedding or the
// signals.
func TestCommand(t *testing.T) {
	goCmd, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"HOST=127.0.0.1", "PORT=0", "AUTH_MODE=open", "DATA_DIR=" + t.TempDir()}
	stdout, logw := io.Pipe()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = logw, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait() // after the log is copied to logw
		logw.Close()
		exited <- err
	}()
	t.Cleanup(func() { cmd.Process.Kill() })

	var url string
	select {
	case addr := <-listening(stdout):
		url = addr
	case err := <-exited:
		t.Fatalf("the command exited at start: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not start in 10s")
	}
	waitHealthy(t, url)
	st, h, body := do(t, http.MethodGet, url+"/openapi.yaml", "", "")
	file, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	if st != http.StatusOK || !bytes.Equal(body, file) {
		t.Errorf("GET /openapi.yaml: %d, %d bytes (%s) that differ from openapi.yaml's %d", st, len(body), h.Get("Content-Type"), len(file))
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Error("the command did not exit in 15s after SIGTERM")
	}
}
