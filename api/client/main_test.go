package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/server"
)

// serverURL is the URL of a real server, in open mode with the embedded
// store, that TestMain starts for the tests and the examples.
var serverURL string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "switchboard-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	spec, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The application's auth webhook: a user logs in with the password
	// "secret" (a real one checks a signature and a password store).
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			AuthData struct{ User, Password string } `json:"authData"`
		}
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.AuthData.Password != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": body.AuthData.User, "clientData": map[string]string{"greeting": "hello " + body.AuthData.User}})
	}))
	defer hook.Close()
	vars := map[string]string{"HOST": "127.0.0.1", "PORT": "0", "AUTH_MODE": "open", "DATA_DIR": dir,
		"AUTH_WEBHOOK_URL": hook.URL, "AUTH_WEBHOOK_SECRET": "client-test-webhook-secret", "JWT_SECRET": "client-test-jwt-secret-0123456789abcdef"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := server.Run(ctx, []string{"switchboard"}, func(k string) string { return vars[k] }, pw, spec)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case serverURL = <-addr:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "server did not start:", err)
		return 1
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "server did not start in 10s")
		return 1
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(serverURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "server not healthy in 10s:", err)
			return 1
		}
		time.Sleep(20 * time.Millisecond)
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "server.Run:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
