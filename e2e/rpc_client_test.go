package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/api/client"
)

// provide runs c.Provide in the background until the test ends and
// returns its error channel.
func provide(t *testing.T, c *client.Client, names []string, h client.Handler, opts ...client.ProvideOption) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Provide(ctx, names, h, opts...) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Error("Provide did not return in 10s after its ctx ended")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// callSoon calls until a provider is registered (NO_RPC_PROVIDER or a
// connection error before that), for up to 10s.
func callSoon(t *testing.T, c *client.Client, name string, in, out any) error {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := c.Call(t.Context(), name, in, out)
		var e *api.Error
		if !api.IsCode(err, api.CodeNoRPCProvider) && (err == nil || errors.As(err, &e)) || time.Now().After(deadline) {
			return err
		}
	}
}

// TestClientProvide serves RPCs with api/client.Provide and calls them
// with Call, against a real server.
func TestClientProvide(t *testing.T) {
	srv := startRPCServer(t, nil)
	c := client.New(srv.URL, "")
	c.HTTP = rpcHTTP

	var sawDeadline atomic.Bool
	stopA := provide(t, c, []string{"math/add-two", "fail", "picky", "slow"}, func(ctx context.Context, req client.Request) (any, error) {
		switch req.Name {
		case "math/add-two":
			var n float64
			if err := req.Decode(&n); err != nil {
				return nil, err
			}
			return n + 2, nil
		case "fail":
			return nil, errors.New("boom")
		case "picky":
			return nil, fmt.Errorf("not mine: %w", client.ErrReject)
		default: // slow: until the requester gives up
			<-ctx.Done()
			sawDeadline.Store(time.Until(req.Deadline) < 100*time.Millisecond)
			return nil, ctx.Err()
		}
	}, client.WithProviderID("a"), client.WithConcurrency(64))

	var sum float64
	if err := callSoon(t, c, "math/add-two", 3, &sum); err != nil || sum != 5 {
		t.Fatalf("add-two(3) = %v, %v", sum, err)
	}
	err := c.Call(t.Context(), "fail", nil, nil)
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeRPCError || e.Detail != "boom" || e.Fields["status"] != http.StatusBadGateway {
		t.Fatalf("fail: %v, want 502 RPC_ERROR boom", err)
	}
	// The only provider rejects: nobody is left.
	if err := c.Call(t.Context(), "picky", "x", nil); !api.IsCode(err, api.CodeNoRPCProvider) {
		t.Fatalf("picky with one rejecting provider: %v", err)
	}
	// A second provider takes what the first rejects.
	stopB := provide(t, c, []string{"picky"}, func(ctx context.Context, req client.Request) (any, error) {
		return "b took " + string(req.Data), nil
	}, client.WithProviderID("b"))
	var got string
	for i := range 5 {
		if err := callSoon(t, c, "picky", i, &got); err != nil || got != "b took "+strconv.Itoa(i) {
			t.Fatalf("picky(%d) = %q, %v", i, got, err)
		}
	}
	// The requester's deadline is the handler's.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err = c.Call(ctx, "slow", nil, nil)
	cancel()
	if !api.IsCode(err, api.CodeRPCTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow: %v, want a timeout", err)
	}
	// Many calls at once.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			var n float64
			if err := c.Call(t.Context(), "math/add-two", i, &n); err != nil || n != float64(i+2) {
				t.Errorf("add-two(%d) = %v, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	if err := stopA(); !errors.Is(err, context.Canceled) {
		t.Errorf("Provide a returned %v, want context.Canceled", err)
	}
	if !sawDeadline.Load() { // Provide returned: every handler has
		t.Error("the slow handler's ctx did not end at the request's deadline")
	}
	if err := stopB(); !errors.Is(err, context.Canceled) {
		t.Errorf("Provide b returned %v, want context.Canceled", err)
	}
	// A poll that the server refuses for good ends Provide at once.
	err = c.Provide(t.Context(), []string{"bad//name"}, func(context.Context, client.Request) (any, error) { return nil, nil })
	if !api.IsCode(err, api.CodeInvalidName) {
		t.Fatalf("Provide(bad//name) = %v, want INVALID_NAME", err)
	}
}

// TestClientProvideReconnects: Provide started before the server exists
// connects once it is up, and again after a restart.
func TestClientProvideReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	c := client.New("http://127.0.0.1:"+port, "")
	c.HTTP = hc
	var served atomic.Int64
	provide(t, c, []string{"ping"}, func(context.Context, client.Request) (any, error) {
		served.Add(1)
		return "pong", nil
	}, client.WithWait(time.Second))
	time.Sleep(300 * time.Millisecond) // a few failed polls

	for round := range 2 {
		srv := startServer(t, map[string]string{"PORT": port})
		var got string
		if err := callSoon(t, c, "ping", nil, &got); err != nil || got != "pong" {
			t.Fatalf("round %d: ping = %q, %v", round, got, err)
		}
		hc.CloseIdleConnections()
		srv.Stop(t)
	}
	if served.Load() != 2 {
		t.Fatalf("served %d calls, want 2", served.Load())
	}
}
