package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Token is a token that the server issued: the answer of Login and Refresh.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	// ID is the user's id (the token's sub).
	ID string `json:"id"`
	// ClientData is what the auth webhook gave the client at login (null
	// after a refresh: the webhook is not asked again).
	ClientData json.RawMessage `json:"clientData"`
}

// auth is the token a Client holds in memory once it has logged in (or
// refreshed, or logged out): it replaces the Token field.
type auth struct {
	mu      sync.Mutex
	set     bool // tok replaces Client.Token
	tok     string
	exp     time.Time // zero: unknown
	refresh sync.Mutex
}

// WithAutoRefresh makes the client refresh a token it got from Login or
// Refresh when less than before is left of its life: before a request, and
// in the background of an open Stream (so that the stream resumes with the
// new token when the server ends it at the old one's expiry).
func WithAutoRefresh(before time.Duration) Option {
	return func(c *Client) { c.autoRefresh = before }
}

// WithTokenRefresher makes the client call f for a new token when the
// server answers 401 UNAUTHENTICATED (an expired or revoked token), and
// send the request again with it, once; a Stream reconnects with it. f
// may log in again (see Login) or ask an identity provider; its error
// ends the request or the stream.
func WithTokenRefresher(f func(ctx context.Context) (string, error)) Option {
	return func(c *Client) { c.refresher = f }
}

// currentToken returns the token to send: the one held in memory since a
// Login, Refresh or Logout, else the Token field.
func (c *Client) currentToken() string {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	if c.auth.set {
		return c.auth.tok
	}
	return c.Token
}

// setToken holds tok (expiring at exp, zero if unknown) in memory.
func (c *Client) setToken(tok string, exp time.Time) {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	c.auth.set, c.auth.tok, c.auth.exp = true, tok, exp
}

// tokenExpiry returns the expiry of the token held in memory (zero: not
// known).
func (c *Client) tokenExpiry() time.Time {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	return c.auth.exp
}

// token returns the token to send, refreshed first when WithAutoRefresh
// asks for it and the token is close to its expiry. A failed refresh is
// not the request's failure: the old token is sent while it lasts.
func (c *Client) token(ctx context.Context) string {
	if c.autoRefresh > 0 {
		if exp := c.tokenExpiry(); !exp.IsZero() && time.Until(exp) < c.autoRefresh {
			c.refreshIfDue(ctx)
		}
	}
	return c.currentToken()
}

// refreshIfDue refreshes the token unless another goroutine has just done
// so.
func (c *Client) refreshIfDue(ctx context.Context) error {
	c.auth.refresh.Lock()
	defer c.auth.refresh.Unlock()
	exp := c.tokenExpiry()
	if exp.IsZero() || time.Until(exp) >= c.autoRefresh {
		return nil
	}
	_, err := c.Refresh(ctx)
	return err
}

// Login posts credentials (any value that encoding/json encodes) to
// POST /auth/login, which hands them to the application's auth webhook,
// and keeps the token it answers in memory: the client sends it from then
// on. Refused credentials are a 401 UNAUTHENTICATED *Error; a webhook
// that is down, 503 AUTH_UNAVAILABLE.
func (c *Client) Login(ctx context.Context, credentials any) (Token, error) {
	raw, err := json.Marshal(credentials)
	if err != nil {
		return Token{}, fmt.Errorf("encode the credentials: %w", err)
	}
	return c.tokenRequest(ctx, "/auth/login", "", raw)
}

// Refresh exchanges the client's token for a new one of the same identity
// and data, and keeps it in memory.
func (c *Client) Refresh(ctx context.Context) (Token, error) {
	return c.tokenRequest(ctx, "/auth/refresh", c.currentToken(), nil)
}

// Logout revokes the client's token on every instance (the streams opened
// with it end) and forgets it: the client then sends no token.
func (c *Client) Logout(ctx context.Context) error {
	resp, err := c.sendAs(ctx, http.MethodPost, "/auth/logout", nil, nil, nil, c.currentToken(), false)
	if err != nil {
		return err
	}
	resp.Body.Close()
	c.setToken("", time.Time{})
	return nil
}

func (c *Client) tokenRequest(ctx context.Context, path, tok string, raw []byte) (Token, error) {
	var h http.Header
	if raw != nil {
		h = http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := c.sendAs(ctx, http.MethodPost, path, nil, h, raw, tok, false)
	if err != nil {
		return Token{}, err
	}
	defer resp.Body.Close()
	var t Token
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.Token == "" {
		return Token{}, fmt.Errorf("decode the answer of %s: %v", path, err)
	}
	c.setToken(t.Token, t.ExpiresAt)
	return t, nil
}

// renewAfter401 gets a new token from the refresher after a 401, and
// reports whether there is one to try.
func (c *Client) renewAfter401(ctx context.Context) (bool, error) {
	if c.refresher == nil {
		return false, nil
	}
	tok, err := c.refresher(ctx)
	if err != nil {
		return false, fmt.Errorf("refresh the token after a 401: %w", err)
	}
	c.auth.mu.Lock()
	if !c.auth.set || c.auth.tok != tok { // else f logged in itself: keep the expiry Login saw
		c.auth.set, c.auth.tok, c.auth.exp = true, tok, time.Time{}
	}
	c.auth.mu.Unlock()
	return true, nil
}
