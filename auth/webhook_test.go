package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/auth"
)

var hookSecret = []byte("webhook-secret")

// hook is an application's auth webhook: it checks the signature, the
// Content-Type and the shape of every request, failing the test when one
// is wrong, then answers with answer.
type hook struct {
	*httptest.Server
	calls atomic.Int32
}

func newHook(t *testing.T, answer http.HandlerFunc) *hook {
	t.Helper()
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("webhook: read: %v", err)
		}
		m := hmac.New(sha256.New, hookSecret)
		m.Write(body)
		if got, want := r.Header.Get("X-Signature"), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
			t.Errorf("webhook: X-Signature %q, want %q", got, want)
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		var req struct {
			AuthData   json.RawMessage `json:"authData"`
			Connection *struct {
				RemoteAddr *string `json:"remoteAddr"`
				UserAgent  *string `json:"userAgent"`
			} `json:"connection"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.AuthData == nil || req.Connection == nil ||
			req.Connection.RemoteAddr == nil || req.Connection.UserAgent == nil {
			t.Errorf("webhook: body %s is not {authData, connection: {remoteAddr, userAgent}}", body)
		}
		answer(w, r)
	}))
	t.Cleanup(h.Close)
	return h
}

func answerJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func wantCode(t *testing.T, name string, err error, code api.Code) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Errorf("%s: error %v, want %s", name, err, code)
	}
}

// TestWebhookAnswers: every kind of answer the webhook can give, and what
// login makes of it.
func TestWebhookAnswers(t *testing.T) {
	yes := newHook(t, answerJSON(200, `{"id":"alice"}`))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	for _, tc := range []struct {
		name   string
		answer http.HandlerFunc
		code   api.Code // "" when it is an identity
	}{
		{"identity", answerJSON(200, `{"id":"alice","clientData":{"name":"Alice"},"serverData":{"role":"admin"}}`), ""},
		{"identity, 201, no data", answerJSON(201, `{"id":"alice"}`), ""},
		{"identity, null serverData", answerJSON(200, `{"id":"alice","serverData":null}`), ""},
		{"401", answerJSON(401, `{}`), api.CodeUnauthenticated},
		{"403", answerJSON(403, ``), api.CodeUnauthenticated},
		{"400", answerJSON(400, `{}`), api.CodeAuthUnavailable},
		{"404", answerJSON(404, `{}`), api.CodeAuthUnavailable},
		{"500", answerJSON(500, `{"id":"alice"}`), api.CodeAuthUnavailable},
		{"503", answerJSON(503, `{}`), api.CodeAuthUnavailable},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, api.CodeAuthUnavailable},
		{"redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, yes.URL, http.StatusFound) }, api.CodeAuthUnavailable},
		{"307", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, yes.URL, http.StatusTemporaryRedirect)
		}, api.CodeAuthUnavailable},
		{"garbage", answerJSON(200, `{"id":`), api.CodeAuthUnavailable},
		{"array", answerJSON(200, `[{"id":"alice"}]`), api.CodeAuthUnavailable},
		{"no id", answerJSON(200, `{"clientData":{}}`), api.CodeAuthUnavailable},
		{"empty id", answerJSON(200, `{"id":""}`), api.CodeAuthUnavailable},
		{"number id", answerJSON(200, `{"id":7}`), api.CodeAuthUnavailable},
		{"serverData not an object", answerJSON(200, `{"id":"alice","serverData":["admin"]}`), api.CodeAuthUnavailable},
		{"bad UTF-8", answerJSON(200, "{\"id\":\"al\xffice\"}"), api.CodeAuthUnavailable},
		{"too large", answerJSON(200, `{"id":"alice","clientData":"`+strings.Repeat("x", auth.MaxWebhookAnswer)+`"}`), api.CodeAuthUnavailable},
		{"JSON labelled text/plain", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, `{"id":"alice"}`)
		}, ""},
		{"JSON without a Content-Type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, `{"id":"alice"}`)
		}, ""},
		{"an HTML page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<html><body>Welcome, alice</body></html>`)
		}, api.CodeAuthUnavailable},
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, api.CodeAuthUnavailable},
	} {
		h := newHook(t, tc.answer)
		w := auth.NewWebhook(h.URL, hookSecret, 300*time.Millisecond)
		id, err := w.Login(context.Background(), json.RawMessage(`{"user":"alice","password":"pw"}`), auth.Connection{RemoteAddr: "192.0.2.1:1234", UserAgent: "test"})
		if tc.code != "" {
			wantCode(t, tc.name, err, tc.code)
			continue
		}
		if err != nil || id.ID != "alice" || id.ServerData == nil {
			t.Errorf("%s: identity %+v, %v", tc.name, id, err)
		}
	}
	if n := yes.calls.Load(); n != 0 {
		t.Errorf("the redirect's target was called %d times", n)
	}
}

// TestWebhookDown: a webhook that cannot be reached is AUTH_UNAVAILABLE.
func TestWebhookDown(t *testing.T) {
	h := newHook(t, answerJSON(200, `{"id":"alice"}`))
	h.Close()
	_, err := auth.NewWebhook(h.URL, hookSecret, time.Second).Login(context.Background(), json.RawMessage(`{}`), auth.Connection{})
	wantCode(t, "down", err, api.CodeAuthUnavailable)
}

// TestWebhookIdentity: the identity's parts come back as the webhook sent
// them, numbers exact.
func TestWebhookIdentity(t *testing.T) {
	h := newHook(t, answerJSON(200, `{"id":"alice","clientData":{"name":"Alice"},"serverData":{"role":"admin","n":12345678901234567890}}`))
	id, err := auth.NewWebhook(h.URL, hookSecret, time.Second).Login(context.Background(), json.RawMessage(`"pw"`), auth.Connection{})
	if err != nil {
		t.Fatal(err)
	}
	if string(id.ClientData) != `{"name":"Alice"}` || id.ServerData["role"] != "admin" || id.ServerData["n"] != json.Number("12345678901234567890") {
		t.Errorf("identity %+v", id)
	}
}
