package e2e

import (
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestExampleWebhook runs examples/authwebhook, the README's webhook, as
// its own process and logs in through it: the right password gets a token
// that works, a wrong one 401, and a server that signs with another secret
// is refused by the webhook (its 403 is a 401).
func TestExampleWebhook(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "authwebhook")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "../examples/authwebhook").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{"ADDR=" + addr, "AUTH_WEBHOOK_SECRET=" + hookSecret}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the example webhook did not listen in 10s")
		}
	}
	hook := "http://" + addr + "/login"

	srv := startServer(t, loginEnv(hook, "AUTH_WEBHOOK_TIMEOUT", "5s"))
	a, _ := logIn(t, srv.URL, "", `{"username":"alice","password":"wonderland"}`)
	if a.ID != "alice" || string(a.ClientData) != `{"name":"alice"}` {
		t.Errorf("login: id %q, clientData %s", a.ID, a.ClientData)
	}
	if data := claimsOf(t, a.Token)["data"]; data.(map[string]any)["role"] != "admin" {
		t.Errorf("the token's data claim: %v", data)
	}
	if st, _, b := do(t, "GET", srv.URL+"/records/x", "", "", "Authorization", "Bearer "+a.Token); st != http.StatusNotFound {
		t.Errorf("GET with the token: %d %s", st, b)
	}
	if st, _, b := do(t, "POST", srv.URL+"/auth/login", "application/json", `{"username":"alice","password":"guess"}`); st != http.StatusUnauthorized {
		t.Errorf("a wrong password: %d %s", st, b)
	}

	other := startServer(t, loginEnv(hook, "AUTH_WEBHOOK_SECRET", "not-the-webhooks-secret-0123456"))
	if st, _, b := do(t, "POST", other.URL+"/auth/login", "application/json", `{"username":"alice","password":"wonderland"}`); st != http.StatusUnauthorized {
		t.Errorf("signed with another secret: %d %s", st, b)
	}
}
