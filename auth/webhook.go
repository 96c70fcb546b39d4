package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// MaxWebhookAnswer bounds the body of the auth webhook's answer: an
// identity is small, and a larger answer is not one.
const MaxWebhookAnswer = 64 << 10

// Webhook asks the application's auth webhook (AUTH_WEBHOOK_URL) who the
// holder of some credentials is. It is safe for concurrent use.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client

	// Observe, when set before the first Login, is told of every Login:
	// how long it took and its result: "ok", "refused" (the webhook said
	// 401 or 403) or "unavailable" (anything else that is not an
	// identity). It is called on the caller's goroutine.
	Observe func(d time.Duration, result string)
}

// NewWebhook returns the webhook at url, whose requests are signed with
// secret and must be answered within timeout. Redirects are never
// followed: an answer that is one is refused.
func NewWebhook(url string, secret []byte, timeout time.Duration) *Webhook {
	return &Webhook{url: url, secret: secret, client: &http.Client{
		Timeout:   timeout,
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // the 3xx is the answer, and it is refused
		},
	}}
}

// Connection is what the webhook is told of the client logging in.
type Connection struct {
	RemoteAddr string `json:"remoteAddr"`
	UserAgent  string `json:"userAgent"`
}

// Identity is the webhook's answer to credentials it accepts.
type Identity struct {
	// ID is the user's id: the sub of the token issued.
	ID string
	// ClientData goes back to the client as it came (JSON; null when absent).
	ClientData json.RawMessage
	// ServerData is the token's data claim, user.data for the rules.
	ServerData map[string]any
}

// Signature is the X-Signature header of a webhook request whose body is
// body: "sha256=" and the hex HMAC-SHA256 of body keyed with secret.
func Signature(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Login posts authData (the client's credentials, valid JSON) and conn to
// the webhook, signed, and returns the identity it answers. The webhook
// refusing (401, 403) is UNAUTHENTICATED; anything else that is not an
// identity (no answer in time, a 5xx, a redirect, another status, a body
// that is not the identity JSON) is AUTH_UNAVAILABLE, never a login.
func (w *Webhook) Login(ctx context.Context, authData json.RawMessage, conn Connection) (Identity, error) {
	start := time.Now()
	id, err := w.login(ctx, authData, conn)
	if w.Observe != nil {
		result := "ok"
		switch {
		case api.IsCode(err, api.CodeUnauthenticated):
			result = "refused"
		case err != nil:
			result = "unavailable"
		}
		w.Observe(time.Since(start), result)
	}
	return id, err
}

func (w *Webhook) login(ctx context.Context, authData json.RawMessage, conn Connection) (Identity, error) {
	body, err := json.Marshal(struct {
		AuthData   json.RawMessage `json:"authData"`
		Connection Connection      `json:"connection"`
	}{authData, conn})
	if err != nil {
		return Identity{}, fmt.Errorf("auth webhook: encode the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return Identity{}, unavailable("its URL does not make a request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Signature", Signature(w.secret, body))
	resp, err := w.client.Do(req)
	if err != nil {
		var timeout interface{ Timeout() bool }
		if errors.As(err, &timeout) && timeout.Timeout() {
			return Identity{}, unavailable("it did not answer within AUTH_WEBHOOK_TIMEOUT (%s)", w.client.Timeout)
		}
		return Identity{}, unavailable("it cannot be reached")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return Identity{}, unauthenticated("the credentials were refused")
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return Identity{}, unavailable("it answered a redirect (%d), which is never followed", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return Identity{}, unavailable("it answered %d", resp.StatusCode)
	}
	return readIdentity(resp)
}

// readIdentity reads a 2xx answer: JSON {"id": non-empty string,
// "clientData": any, "serverData": object or null}. The body decides, not
// its Content-Type: many a webhook sends JSON without saying so (Go's
// net/http labels it text/plain), and what is not JSON fails below.
func readIdentity(resp *http.Response) (Identity, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxWebhookAnswer+1))
	switch {
	case err != nil:
		return Identity{}, unavailable("its answer could not be read")
	case len(b) > MaxWebhookAnswer:
		return Identity{}, unavailable("its answer is larger than %d bytes", MaxWebhookAnswer)
	case api.Validate(b) != nil:
		return Identity{}, unavailable("its answer is not valid JSON")
	}
	var answer struct {
		ID         *string         `json:"id"`
		ClientData json.RawMessage `json:"clientData"`
		ServerData json.RawMessage `json:"serverData"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		return Identity{}, unavailable(`its answer is not {"id", "clientData", "serverData"}`)
	}
	if answer.ID == nil || *answer.ID == "" {
		return Identity{}, unavailable(`its answer has no "id" (a non-empty string naming the user)`)
	}
	id := Identity{ID: *answer.ID, ClientData: answer.ClientData, ServerData: map[string]any{}}
	if len(id.ClientData) == 0 {
		id.ClientData = json.RawMessage("null")
	}
	if len(answer.ServerData) > 0 && string(answer.ServerData) != "null" {
		dec := json.NewDecoder(bytes.NewReader(answer.ServerData))
		dec.UseNumber()
		if err := dec.Decode(&id.ServerData); err != nil || id.ServerData == nil {
			return Identity{}, unavailable(`its answer's "serverData" is not an object`)
		}
	}
	return id, nil
}

func unavailable(format string, args ...any) error {
	return &api.Error{Code: api.CodeAuthUnavailable, Detail: "the auth webhook is unavailable: " + fmt.Sprintf(format, args...)}
}
