package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunCtrlC runs `make run` as a terminal would, in a process group
// of its own, and sends the group SIGINT (Ctrl-C) once the server listens:
// the server shuts down and exits 0, and make reports nothing (with `go
// run`, which dies of the signal or exits 1, make said "*** [run]
// Interrupt" or "Error 1"). GNU make itself, once it has waited for its
// recipe, ends by the SIGINT it got, as it does on every Ctrl-C: that is
// accepted, any exit status is not.
func TestMakeRunCtrlC(t *testing.T) {
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed: %v", err)
	}
	cmd := exec.Command(mk, "run")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PORT=0", "HOST=127.0.0.1", "DATA_DIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() {
		select {
		case <-done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	var log strings.Builder
	listening := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), `"msg":"listening"`) {
				close(listening)
			}
		}
	}()
	select {
	case <-listening:
	case <-done:
		t.Fatalf("make run ended before the server listened:\n%s", log.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("the server did not listen within 3 minutes of make run")
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	interrupted := false
	if e, ok := err.(*exec.ExitError); ok {
		ws, _ := e.Sys().(syscall.WaitStatus)
		interrupted = ws.Signaled() && ws.Signal() == syscall.SIGINT
	}
	if err != nil && !interrupted || strings.Contains(log.String(), "make: ***") || !strings.Contains(log.String(), "shutting down") {
		t.Errorf("make run after Ctrl-C: %v\n%s", err, log.String())
	}
}
