package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Request is an RPC request handed to a provider.
type Request struct {
	ID        string          `json:"id"`        // the claim's id, which the answer carries
	Name      string          `json:"name"`      // the RPC's name
	Data      json.RawMessage `json:"data"`      // the input
	Deadline  time.Time       `json:"deadline"`  // when the requester stops waiting
	Requester string          `json:"requester"` // the requester's user id; empty if anonymous
}

// Decode decodes the request's input into v.
func (r Request) Decode(v any) error { return json.Unmarshal(r.Data, v) }

// Handler serves one RPC request. Its result (any value that
// encoding/json encodes; a json.RawMessage is sent as is) is the
// requester's answer; an error is sent as the answer's message (the
// requester gets 502 RPC_ERROR), except ErrReject. ctx ends at the
// request's deadline, or when Provide's ctx ends.
type Handler func(ctx context.Context, req Request) (any, error)

// ErrReject, returned by a Handler (or wrapped), hands the request to a
// provider that has not had it yet; when none is left, the requester gets
// 503 NO_RPC_PROVIDER.
var ErrReject = errors.New("reject the rpc request")

// ProvideOption tunes Provide.
type ProvideOption func(*provideOptions)

type provideOptions struct {
	concurrency int
	provider    string
	wait        time.Duration
}

// WithConcurrency sets how many requests Provide serves at once (default
// 16): each runs in its own goroutine, and Provide asks for no more than
// it has room for.
func WithConcurrency(n int) ProvideOption {
	return func(o *provideOptions) { o.concurrency = max(n, 1) }
}

// WithProviderID sets the provider's id (1-128 bytes of A-Z a-z 0-9
// - _ . ~ / : @ !). Requests that this provider rejected or let time out
// never come back to a provider of the same id and user. Default: a
// random id for each call of Provide.
func WithProviderID(id string) ProvideOption {
	return func(o *provideOptions) { o.provider = id }
}

// WithWait sets how long each long-poll waits for work (default 30s, at
// most 60s).
func WithWait(d time.Duration) ProvideOption {
	return func(o *provideOptions) { o.wait = d }
}

// Provide serves the RPCs names with h until ctx ends. It long-polls the
// server (GET /rpc-requests), runs h for each request in a goroutine of
// its own and posts its answer (POST /rpc-requests/{id}). When the server
// cannot be reached or fails, it polls again after an exponential backoff
// (100ms growing to 10s), forever. It returns ctx's error once ctx ends
// and every handler under way has answered, or at once the error of a
// poll that the server refuses for good (400, 401, 403: a bad name, a bad
// token, no permission). A handler still running when ctx ends sees its
// ctx end; if it then fails, its request is rejected, so that another
// provider serves it.
func (c *Client) Provide(ctx context.Context, names []string, h Handler, opts ...ProvideOption) error {
	o := provideOptions{concurrency: 16, provider: randomID(), wait: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	query := url.Values{"name": names, "provider": {o.provider}, "wait": {o.wait.String()}}
	slots := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	b := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: 10 * time.Second}
	b.Reset()
	for {
		// Wait for room for one request, then take every free slot.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := 1
		for n < o.concurrency && tryAcquire(slots) {
			n++
		}
		query.Set("max", strconv.Itoa(n))
		reqs, err := c.poll(ctx, query)
		if len(reqs) > n {
			reqs = reqs[:n] // never more than asked; the rest time out to others
		}
		for range n - len(reqs) {
			<-slots
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && permanent(err):
			return err
		case err != nil:
			if !sleep(ctx, b.NextBackOff()) {
				return ctx.Err()
			}
			continue
		}
		b.Reset()
		for _, r := range reqs {
			wg.Go(func() {
				defer func() { <-slots }()
				c.serve(ctx, r, h)
			})
		}
	}
}

// poll runs one long-poll: its requests, none after the wait.
func (c *Client) poll(ctx context.Context, query url.Values) ([]Request, error) {
	resp, err := c.do(ctx, http.MethodGet, "/rpc-requests", query, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	var body struct {
		Requests []Request `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Requests, nil
}

// serve runs h for one request and posts its answer.
func (c *Client) serve(ctx context.Context, r Request, h Handler) {
	hctx, cancel := context.WithDeadline(ctx, r.Deadline)
	v, err := h(hctx, r)
	cancel()
	var answer any
	switch {
	case errors.Is(err, ErrReject) || (err != nil && ctx.Err() != nil):
		answer = map[string]bool{"reject": true}
	case err != nil:
		msg := err.Error()
		if msg == "" {
			msg = "the provider failed"
		}
		answer = map[string]string{"error": msg}
	default:
		data, merr := json.Marshal(v)
		if merr != nil {
			answer = map[string]string{"error": "the provider's result cannot be encoded as JSON: " + merr.Error()}
		} else {
			answer = map[string]json.RawMessage{"data": data}
		}
	}
	c.answer(ctx, r, answer)
}

// answer posts an answer, again after a failure the server may recover
// from, until the request's deadline. Its ctx outlives Provide's: an
// answer computed is worth sending.
func (c *Client) answer(ctx context.Context, r Request, answer any) {
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), r.Deadline)
	defer cancel()
	b := &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: time.Second}
	b.Reset()
	for {
		resp, err := c.do(ctx, http.MethodPost, "/rpc-requests/"+url.PathEscape(r.ID), nil, answer)
		if err == nil {
			resp.Body.Close()
			return
		}
		// 404: the claim ended (its lease ran out, or the requester left).
		if permanent(err) || !sleep(ctx, b.NextBackOff()) {
			return
		}
	}
}

// permanent reports whether the server refused a request in a way that
// asking again cannot change: a 4xx other than 408 and 429.
func permanent(err error) bool {
	s := status(err)
	return s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests
}

// Call calls the RPC name with input (any value that encoding/json
// encodes; a json.RawMessage is sent as is) and decodes the answer into
// out (nil: drop it). It waits until ctx's deadline, at most 60s, or
// without one the server's default, 10s. Errors that the server answered
// are *api.Error values with the codes NO_RPC_PROVIDER (503: no provider,
// or none left that has not had the request: each one rejected it or was
// presumed dead), RPC_TIMEOUT (504), RPC_ERROR (502: the detail is the
// provider's message), PERMISSION_DENIED and so on.
func (c *Client) Call(ctx context.Context, name string, input, out any) error {
	query := url.Values{}
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return context.DeadlineExceeded
		}
		d = min(d.Round(time.Millisecond)+time.Millisecond, time.Minute)
		query.Set("timeout", d.String())
	}
	if input == nil {
		input = json.RawMessage("null")
	}
	resp, err := c.do(ctx, http.MethodPost, "/rpc/"+escapeName(name), query, input)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body.Data, out)
}

func tryAcquire(slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// randomID returns a provider id of 64 random bits.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}
