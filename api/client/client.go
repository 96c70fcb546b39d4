// Package client is the Go client of Switchboard's HTTP API. It serves
// RPCs from any Go program that can reach the server (a provider needs no
// inbound port: it long-polls) and calls them:
//
//	c := client.New("https://switchboard.example.com", token)
//	err := c.Provide(ctx, []string{"add-two"}, func(ctx context.Context, req client.Request) (any, error) {
//		var n float64
//		if err := req.Decode(&n); err != nil {
//			return nil, err // the caller gets 502 RPC_ERROR with this message
//		}
//		return n + 2, nil
//	})
//
//	var sum float64
//	err = c.Call(ctx, "add-two", 3, &sum) // sum == 5
//
// Streams multiplex subscriptions over one Server-Sent Events connection,
// reconnect by themselves and resume where they were, with no frame lost
// or delivered twice:
//
//	s, err := c.Stream(ctx, client.RecordSub("driver/14"), client.CollectionSub("driver/"),
//		client.EventSub("chat/*"), client.PresenceSub("*"))
//	defer s.Close()
//	for f := range s.Frames() {
//		if r, err := f.AsRecord(); err == nil {
//			fmt.Println(r.Op, r.Name, r.Version, string(r.Data))
//		}
//	}
//
// Login hands credentials to the application's auth webhook and keeps the
// token; WithAutoRefresh refreshes it before it expires.
//
// Errors that the server answered are *Error values carrying the HTTP
// status and the problem's code and detail; they unwrap to *api.Error, so
// api.IsCode(err, api.CodeNoRPCProvider) works on them.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Client talks to one Switchboard server. Its fields are read at each
// request; set them before use. A Client is safe for concurrent use.
type Client struct {
	// BaseURL is the server's URL, such as "https://switchboard.example.com".
	BaseURL string
	// Token is sent as "Authorization: Bearer <token>"; empty in open mode.
	// Once Login, Refresh or Logout (or a refresher) has run, the token
	// they got, held in memory, is sent instead.
	Token string
	// HTTP sends the requests; nil means http.DefaultClient. Polls and
	// calls last up to a minute: a Timeout, if set, must be longer.
	HTTP *http.Client

	auth        auth
	autoRefresh time.Duration
	refresher   func(ctx context.Context) (string, error)
}

// New returns a Client of the server at baseURL that sends token.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: baseURL, Token: token}
}

// do sends a request with an optional JSON body (nil: none) and returns the
// response of a 2xx status. Any other status is an *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	var raw []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the body of %s %s: %w", method, path, err)
		}
		raw = b
	}
	var h http.Header
	if body != nil {
		h = http.Header{"Content-Type": {"application/json"}}
	}
	return c.send(ctx, method, path, query, h, raw)
}

// send sends a request with the headers h and the body raw (nil: none) and
// returns the response of a 2xx status. Any other status is an *Error.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, h http.Header, raw []byte) (*http.Response, error) {
	return c.sendAs(ctx, method, path, query, h, raw, c.token(ctx), true)
}

// sendAs is send with the token tok (empty: none); with renew set, a 401
// answer gets a new token from the refresher (WithTokenRefresher) and the
// request is sent again, once.
func (c *Client) sendAs(ctx context.Context, method, path string, query url.Values, h http.Header, raw []byte, tok string, renew bool) (*http.Response, error) {
	resp, err := c.sendOnce(ctx, method, path, query, h, raw, tok)
	if renew && status(err) == http.StatusUnauthorized {
		if ok, rerr := c.renewAfter401(ctx); rerr != nil {
			return nil, rerr
		} else if ok {
			return c.sendOnce(ctx, method, path, query, h, raw, c.currentToken())
		}
	}
	return resp, err
}

func (c *Client) sendOnce(ctx context.Context, method, path string, query url.Values, h http.Header, raw []byte, tok string) (*http.Response, error) {
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	u := strings.TrimSuffix(c.BaseURL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, problem(resp)
}

// problem reads an error response as an *Error: the problem body's
// code and detail, or for a body that is no problem (a proxy's page) a
// code that fits the status.
func problem(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Code           api.Code `json:"code"`
		Detail         string   `json:"detail"`
		CurrentVersion int64    `json:"currentVersion"`
		Index          *int     `json:"index"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/problem+json" || json.Unmarshal(b, &p) != nil || p.Code == "" {
		p.Code, p.Detail = api.CodeInternal, strings.TrimSpace(resp.Status+" "+string(b))
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway ||
			resp.StatusCode == http.StatusGatewayTimeout {
			p.Code = api.CodeUnavailable
		}
	}
	e := &Error{Status: resp.StatusCode, Code: p.Code, Detail: p.Detail, CurrentVersion: p.CurrentVersion, Index: -1}
	if p.Index != nil {
		e.Index = *p.Index
	}
	return e
}

// status returns the HTTP status of an error the server answered, or 0.
func status(err error) int {
	var e *api.Error
	if errors.As(err, &e) {
		if s, ok := e.Fields["status"].(int); ok {
			return s
		}
	}
	return 0
}

// escapeName escapes a name for a URL path, keeping its '/'.
func escapeName(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
