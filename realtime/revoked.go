package realtime

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Revoked tokens on this instance. The Store holds every revocation
// (api.Revocations); each instance keeps the live ones in memory, so that
// checking a token is a map lookup, never a query: it reads them all at
// start (Load), then, woken on api.TopicRevoked, only those after the
// last position it read. A Bus that may have lost wake-ups says so with
// fn(nil), which reads on from that position too; and every Sweep the
// instance reads on anyway, in case a revoking instance died between its
// store write and its Bus send. On learning a revocation it ends this
// instance's streams opened with that token.

// RevocationsConfig holds the timings of Revocations; zero fields take
// their defaults.
type RevocationsConfig struct {
	// Sweep is how often expired revocations are dropped, from memory and
	// from the Store, and the Store is read on from the last position
	// (default 1 min).
	Sweep time.Duration
	// Grace keeps a revocation past its token's expiry, longer than the
	// clock skew that verifiers allow on exp (default 1 min).
	Grace time.Duration
}

// Revocations is this instance's set of revoked tokens and the service
// that revokes them. It is safe for concurrent use.
type Revocations struct {
	store api.Revocations
	bus   api.Bus
	hub   *Hub
	cfg   RevocationsConfig
	log   *slog.Logger

	// set maps a revoked jti to when to drop it (its token's expiry +
	// Grace). A sync.Map: it is read on every request, from every core,
	// and written only on a revocation or a sweep, under mu; its reads
	// take no lock.
	set sync.Map
	mu  sync.Mutex

	readMu sync.Mutex // one reader of the Store at a time
	pos    int64      // the last position read; under readMu

	wake chan struct{}
}

// NewRevocations returns the revoked tokens of store, announced on bus.
// Streams of hub (nil: none) opened with a token that gets revoked end.
// log (nil: none) takes the errors of Run. Load it before serving, and
// Run it.
func NewRevocations(store api.Revocations, bus api.Bus, hub *Hub, cfg RevocationsConfig, log *slog.Logger) *Revocations {
	if cfg.Sweep <= 0 {
		cfg.Sweep = time.Minute
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Revocations{store: store, bus: bus, hub: hub, cfg: cfg, log: log,
		wake: make(chan struct{}, 1)}
	if hub != nil {
		hub.revocations.Store(r)
	}
	return r
}

// Revoked reports whether the token with the id jti is revoked: one map
// lookup, without a lock. An expired revocation may still say true until
// the next sweep; its token is refused as expired anyway.
func (r *Revocations) Revoked(jti string) bool {
	_, ok := r.set.Load(jti)
	return ok
}

// Revoke refuses the token with the id jti until until (its expiry), on
// every instance: it stores the revocation, applies it here at once (this
// instance's streams opened with it end), then announces it on the Bus.
func (r *Revocations) Revoke(ctx context.Context, jti string, until time.Time) error {
	if err := r.store.Revoke(ctx, jti, until); err != nil {
		return err
	}
	r.learn(jti, until, time.Now())
	if err := r.bus.Send(ctx, api.TopicRevoked, nil); err != nil {
		return fmt.Errorf("announce a revocation: %w", err)
	}
	return nil
}

// Load reads the revocations stored after the last position read (at
// start: all of them).
func (r *Revocations) Load(ctx context.Context) error {
	r.readMu.Lock()
	defer r.readMu.Unlock()
	for {
		rs, err := r.store.Revocations(ctx, r.pos, 1000)
		if err != nil {
			return fmt.Errorf("read revoked tokens: %w", err)
		}
		now := time.Now()
		for _, x := range rs {
			r.learn(x.JTI, x.Until, now)
			r.pos = x.Seq
		}
		if len(rs) < 1000 {
			return nil
		}
	}
}

// Run keeps the set up to date until ctx ends: it reads on from the Store
// whenever the Bus wakes it (or says it may have missed wake-ups), and
// sweeps every cfg.Sweep.
func (r *Revocations) Run(ctx context.Context) {
	stop := r.bus.Subscribe(api.TopicRevoked, func([]byte) { signal(r.wake) })
	defer stop()
	sweep := time.NewTicker(r.cfg.Sweep)
	defer sweep.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	signal(r.wake) // what was revoked between Load and the subscription
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-retry.C:
		case <-sweep.C:
			r.sweep(ctx, time.Now())
		}
		if err := r.Load(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("read revoked tokens", "err", err)
			retry.Reset(250 * time.Millisecond)
		}
	}
}

// learn adds a revocation to the set, unless it is over at now, and ends
// the streams opened with its token the first time.
func (r *Revocations) learn(jti string, until, now time.Time) {
	drop := until.Add(r.cfg.Grace)
	if !drop.After(now) {
		return
	}
	r.mu.Lock()
	old, had := r.set.Load(jti)
	if !had || drop.After(old.(time.Time)) {
		r.set.Store(jti, drop)
	}
	r.mu.Unlock()
	if !had && r.hub != nil {
		r.hub.endRevoked(jti)
	}
}

// sweep drops the revocations over at now, here and in the Store (every
// instance does: the delete is idempotent).
func (r *Revocations) sweep(ctx context.Context, now time.Time) {
	r.mu.Lock()
	r.set.Range(func(jti, drop any) bool {
		if !drop.(time.Time).After(now) {
			r.set.Delete(jti)
		}
		return true
	})
	r.mu.Unlock()
	if err := r.store.TrimRevocations(ctx, now.Add(-r.cfg.Grace)); err != nil && ctx.Err() == nil {
		r.log.Error("trim revoked tokens", "err", err)
	}
}

// TokenVerifier checks a caller's token and returns its user and expiry
// (the method of handlers.Verifier; auth.Verifier is one).
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (api.User, time.Time, error)
}

// Refusing returns v refusing revoked tokens as UNAUTHENTICATED, after v
// has verified them (so that only signed ids are looked up), by their
// api.User.TokenID. A nil v stays nil.
func (r *Revocations) Refusing(v TokenVerifier) TokenVerifier {
	if v == nil {
		return nil
	}
	return refusing{v: v, r: r}
}

type refusing struct {
	v TokenVerifier
	r *Revocations
}

func (f refusing) Verify(ctx context.Context, token string) (api.User, time.Time, error) {
	u, exp, err := f.v.Verify(ctx, token)
	if err != nil {
		return u, exp, err
	}
	if jti := u.TokenID; jti != "" && f.r.Revoked(jti) {
		return api.User{}, time.Time{}, api.Errorf(api.CodeUnauthenticated, "the token was revoked")
	}
	return u, exp, nil
}
