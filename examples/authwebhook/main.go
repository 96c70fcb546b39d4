// Command authwebhook is an example of the login webhook that Switchboard
// calls on POST /auth/login. It checks the request's signature, looks the
// credentials up, and answers with the user's identity (200) or 401.
//
//	AUTH_WEBHOOK_SECRET=s3cret go run ./examples/authwebhook   # listens on 127.0.0.1:9000
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
)

// users are this example's accounts: name → password and role.
var users = map[string]struct{ password, role string }{
	"alice": {"wonderland", "admin"},
	"bob":   {"builder", "user"},
}

func main() {
	secret := []byte(os.Getenv("AUTH_WEBHOOK_SECRET"))
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:9000"
	}
	http.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if err != nil || !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(want)) {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		var req struct {
			AuthData struct{ Username, Password string } `json:"authData"`
		}
		json.Unmarshal(body, &req) // credentials of another shape find no user
		u, ok := users[req.AuthData.Username]
		if !ok || u.password != req.AuthData.Password {
			http.Error(w, "wrong username or password", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id":         req.AuthData.Username,
			"clientData": map[string]any{"name": req.AuthData.Username},
			"serverData": map[string]any{"role": u.role},
		})
	})
	log.Printf("auth webhook on http://%s/login", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
