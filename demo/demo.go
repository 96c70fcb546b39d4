// Package demo is the live demo that the server serves at GET /demo when
// DEMO=true: one embedded HTML page (page.go, demo.html) that uses the
// browser library, and its built-in provider (Provider), which runs inside
// the server. The provider moves the pizza drivers (records driver/1 to
// driver/N) only while someone watches them, as listening tells it, and
// serves the RPC demo/add-two.
//
// The provider talks to the engine in-process (the hub, the record
// service, the RPC service), not over HTTP: it needs no token, so it works
// under every AUTH_MODE (a server that only verifies tokens of a JWKS_URL
// could not sign one for itself), and its own identity, which no request
// can claim, passes every permission check (Trust), whatever the rules of
// PERMISSIONS_FILE say.
package demo

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// AddTwo is the name of the demo's RPC: {"a": number, "b": number} answers
// their sum.
const AddTwo = "demo/add-two"

// Services are the parts of the engine the provider uses.
type Services struct {
	Hub     *realtime.Hub
	Records *realtime.Records
	RPC     *realtime.RPC
	Log     *slog.Logger
}

// Provider is the demo's built-in provider: call Run once. Its methods
// are safe for concurrent use.
type Provider struct {
	s    Services
	tick time.Duration // how often a watched driver moves: one write per tick

	mu sync.Mutex
	// drivers is fixed by New, by record name. A driver's position is the
	// mover's own; its active and fresh flags are under mu.
	drivers map[string]*driver
	wake    chan struct{} // a driver became active
}

// New returns the provider over s.
func New(s Services) *Provider {
	p := &Provider{s: s, tick: 300 * time.Millisecond, drivers: map[string]*driver{}, wake: make(chan struct{}, 1)}
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for i, name := range driverNames {
		d := newDriver(i, name, rnd)
		p.drivers[d.record] = d
	}
	return p
}

// Run serves until ctx ends, then returns once every goroutine it started
// is done. While the hub drains it stops listening and polling, so that
// the server's shutdown is not kept waiting.
func (p *Provider) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { p.listen(ctx) })
	wg.Go(func() { p.serveRPC(ctx) })
	wg.Go(func() { p.move(ctx) })
	wg.Wait()
}

// setActive records that a driver's record has (or no longer has) a
// watcher; names that are no driver are ignored.
func (p *Provider) setActive(name string, active bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.drivers[name]
	if d == nil || d.active == active {
		return
	}
	d.active = active
	if active {
		d.fresh = true
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// idleAll marks every driver inactive: the stream that was told of the
// demand ended, and the next one is told again.
func (p *Provider) idleAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.drivers {
		d.active = false
	}
}

// serveRPC long-polls for demo/add-two requests and answers them until ctx
// ends.
func (p *Provider) serveRPC(ctx context.Context) {
	for ctx.Err() == nil {
		reqs, err := p.s.RPC.Poll(ctx, self, realtime.Poll{Names: []string{AddTwo}, Wait: 30 * time.Second, Max: 16})
		if err != nil {
			if ctx.Err() == nil && !p.s.Hub.Draining() {
				p.s.Log.Warn("demo: poll for RPC requests", "err", err)
			}
			sleep(ctx, time.Second) // while the server drains, until ctx ends
			continue
		}
		for _, r := range reqs {
			if err := p.s.RPC.Answer(ctx, r.ID, addTwo(r.Data)); err != nil && ctx.Err() == nil {
				p.s.Log.Warn("demo: answer an RPC", "rpc", r.Name, "err", err)
			}
		}
	}
}

// addTwo answers {"a": number, "b": number} with a+b.
func addTwo(data json.RawMessage) api.RPCAnswer {
	var in struct{ A, B *float64 }
	if err := json.Unmarshal(data, &in); err != nil || in.A == nil || in.B == nil {
		return api.RPCAnswer{Error: `demo/add-two takes {"a": number, "b": number}`}
	}
	out, _ := json.Marshal(*in.A + *in.B)
	return api.RPCAnswer{Data: out}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
