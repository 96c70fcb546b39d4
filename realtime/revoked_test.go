package realtime_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/auth"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/realtime"
)

// runRevocations loads r and runs it until the test ends.
func runRevocations(t *testing.T, r *realtime.Revocations) {
	t.Helper()
	if err := r.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRevocationsWoken: two instances over one store and one Bus; a
// revocation on one is known to the other once the Bus wakes it (its
// sweep, which would also find it, is an hour away), and to the revoker
// at once.
func TestRevocationsWoken(t *testing.T) {
	store := openStore(t)
	cfg := realtime.RevocationsConfig{Sweep: time.Hour}
	a := realtime.NewRevocations(store, store.Bus(), nil, cfg, quiet)
	b := realtime.NewRevocations(store, store.Bus(), nil, cfg, quiet)
	runRevocations(t, a)
	runRevocations(t, b)
	for i := range 20 {
		jti := fmt.Sprintf("tok-%d", i)
		if err := a.Revoke(t.Context(), jti, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if !a.Revoked(jti) {
			t.Fatalf("the revoking instance does not know %s once Revoke returned", jti)
		}
		eventually(t, "the other instance knows "+jti, func() bool { return b.Revoked(jti) })
	}
	if a.Revoked("never-revoked") || b.Revoked("never-revoked") || a.Revoked("") {
		t.Error("a token never revoked is said revoked")
	}
	if err := a.Revoke(t.Context(), "", time.Now().Add(time.Hour)); !api.IsCode(err, api.CodeInvalidParameter) {
		t.Errorf("Revoke of an empty jti = %v, want INVALID_PARAMETER", err)
	}
}

// TestRevocationsCatchUp: an instance that missed wake-ups (its Bus is
// not the revoker's) learns nothing until its Bus says it may have missed
// some (fn(nil), as the Postgres listener does after a reconnect); then it
// reads on from its position and knows every revocation since. A new
// instance loads them all at start.
func TestRevocationsCatchUp(t *testing.T) {
	store := openStore(t)
	cfg := realtime.RevocationsConfig{Sweep: time.Hour}
	a := realtime.NewRevocations(store, store.Bus(), nil, cfg, quiet)
	otherBus := embedded.NewBus()
	b := realtime.NewRevocations(store, otherBus, nil, cfg, quiet)
	runRevocations(t, a)
	if err := a.Revoke(t.Context(), "before", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	runRevocations(t, b)
	if !b.Revoked("before") {
		t.Fatal("Load did not read what was revoked before it")
	}
	var jtis []string
	for i := range 1500 { // more than one page
		jti := fmt.Sprintf("missed-%d", i)
		if err := store.Revoke(t.Context(), jti, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		jtis = append(jtis, jti)
	}
	if err := a.Revoke(t.Context(), "last", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b.Revoked("last") {
		t.Fatal("b learned a revocation without a wake-up: the test shows nothing")
	}
	if err := otherBus.Send(t.Context(), api.TopicRevoked, nil); err != nil { // fn(nil)
		t.Fatal(err)
	}
	eventually(t, "b catches up after fn(nil)", func() bool { return b.Revoked("last") })
	for _, jti := range jtis {
		if !b.Revoked(jti) {
			t.Fatalf("b caught up without %s", jti)
		}
	}
	c := realtime.NewRevocations(store, embedded.NewBus(), nil, cfg, quiet)
	if err := c.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !c.Revoked("before") || !c.Revoked("last") || !c.Revoked(jtis[777]) {
		t.Error("a new instance did not load every revocation")
	}
}

// TestRevocationsExpire: a revocation is dropped from memory and from the
// store once its token has expired (and the grace has passed), and one
// already over is not loaded.
func TestRevocationsExpire(t *testing.T) {
	store := openStore(t)
	cfg := realtime.RevocationsConfig{Sweep: 20 * time.Millisecond, Grace: time.Millisecond}
	if err := store.Revoke(t.Context(), "over", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	r := realtime.NewRevocations(store, store.Bus(), nil, cfg, quiet)
	runRevocations(t, r)
	if r.Revoked("over") {
		t.Error("a revocation already over was loaded")
	}
	if err := r.Revoke(t.Context(), "short", time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke(t.Context(), "long", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !r.Revoked("short") {
		t.Fatal("not revoked")
	}
	eventually(t, "the expired revocation is dropped", func() bool { return !r.Revoked("short") })
	eventually(t, "the store forgets the expired revocations", func() bool {
		rs, err := store.Revocations(t.Context(), 0, 10)
		return err == nil && len(rs) == 1 && rs[0].JTI == "long"
	})
	if !r.Revoked("long") {
		t.Error("a live revocation was dropped")
	}
}

const testSecret = "realtime-test-secret-0123456789abcdef"

func signJTI(t testing.TB, sub, jti string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	if jti != "" {
		claims["jti"] = jti
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRefusing: the verifier wrapped by Refusing refuses a revoked token
// with UNAUTHENTICATED (one without a jti by its hash), and passes every
// other token and every other refusal as it was.
func TestRefusing(t *testing.T) {
	store := openStore(t)
	r := realtime.NewRevocations(store, store.Bus(), nil, realtime.RevocationsConfig{}, quiet)
	if r.Refusing(nil) != nil {
		t.Error("Refusing(nil) is not nil: a server without keys must go on refusing every token")
	}
	v, err := auth.New(t.Context(), auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	checked := r.Refusing(v)
	one, two, none := signJTI(t, "alice", "one"), signJTI(t, "alice", "two"), signJTI(t, "alice", "")
	if err := r.Revoke(t.Context(), "one", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := checked.Verify(t.Context(), one); !api.IsCode(err, api.CodeUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked token: %v, want UNAUTHENTICATED, revoked", err)
	}
	for _, tok := range []string{two, none} {
		u, exp, err := checked.Verify(t.Context(), tok)
		if err != nil || u.ID != "alice" || exp.IsZero() {
			t.Errorf("a token not revoked: %+v %v %v", u, exp, err)
		}
	}
	if _, _, err := checked.Verify(t.Context(), "garbage"); !api.IsCode(err, api.CodeUnauthenticated) || strings.Contains(err.Error(), "revoked") {
		t.Errorf("a malformed token: %v, want the verifier's own refusal", err)
	}
	sum := sha256.Sum256([]byte(none))
	if err := r.Revoke(t.Context(), "sha256:"+hex.EncodeToString(sum[:]), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := checked.Verify(t.Context(), none); !api.IsCode(err, api.CodeUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a token without a jti, revoked by its hash: %v, want UNAUTHENTICATED, revoked", err)
	}
}

// TestRevokeEndsStreams: with both writers, revoking a token ends the
// streams opened with it, and only those; a stream opened with it that
// registers after the revocation ends at once.
func TestRevokeEndsStreams(t *testing.T) {
	for name, serve := range writers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, realtime.HubConfig{
				Heartbeat: time.Hour, MaxLifetime: time.Hour, Retry: time.Second, BufferBytes: 1 << 20,
			})
			r := realtime.NewRevocations(f.store, f.store.Bus(), f.hub, realtime.RevocationsConfig{}, quiet)
			runRevocations(t, r)
			user := func(jti string) api.User {
				return api.User{ID: "alice", Claims: map[string]any{"sub": "alice", "jti": jti}, Expires: time.Now().Add(time.Hour), TokenID: jti}
			}
			open := func(u api.User) <-chan string {
				s, err := f.hub.Open(t.Context(), u, []api.Subscription{{Event: "chat"}}, "")
				if err != nil {
					t.Fatal(err)
				}
				frames := readFrames(serve(t, s))
				if got := next(t, frames, true); !strings.HasPrefix(got, "ready ") {
					t.Fatalf("first frame %q", got)
				}
				return frames
			}
			revoked, kept := open(user("one")), open(user("two"))
			noJTI := open(api.User{ID: "alice", Claims: map[string]any{"sub": "alice"}})
			if err := r.Revoke(t.Context(), "one", time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if got := next(t, revoked, true); got != "closed" {
				t.Fatalf("the revoked token's stream got %q, want its end", got)
			}
			if _, err := f.events.Publish(t.Context(), api.User{}, "chat", []byte(`"hi"`)); err != nil {
				t.Fatal(err)
			}
			for _, frames := range []<-chan string{kept, noJTI} {
				if got := next(t, frames, true); !strings.HasPrefix(got, `event {"name":"chat","data":"hi"`) {
					t.Fatalf("a stream of another token got %q", got)
				}
			}

			// Opened with the revoked token (verified before the revocation),
			// registered after it.
			s, err := f.hub.Open(t.Context(), user("one"), []api.Subscription{{Event: "chat"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			late := readFrames(serve(t, s))
			for {
				got := next(t, late, true)
				if got == "closed" {
					break
				}
				if !strings.HasPrefix(got, "ready ") {
					t.Fatalf("a stream of a revoked token got %q", got)
				}
			}
			waitStreams(t, f.hub, 2)
		})
	}
}

// BenchmarkRevokedLookup is the check on the request path: one map lookup
// without a lock, among 10,000 revoked tokens, from one core and from all.
func BenchmarkRevokedLookup(b *testing.B) {
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	r := realtime.NewRevocations(store, store.Bus(), nil, realtime.RevocationsConfig{}, quiet)
	until := time.Now().Add(time.Hour)
	for i := range 10_000 {
		if err := store.Revoke(b.Context(), fmt.Sprintf("revoked-%d", i), until); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Load(b.Context()); err != nil {
		b.Fatal(err)
	}
	jtis := []string{"revoked-42", "not-revoked-1", "revoked-9999", "019a3c2e-7b1d-7f00-8000-000000000000"}
	b.Run("serial", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			r.Revoked(jtis[i&3])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				r.Revoked(jtis[i&3])
			}
		})
	})
}

// BenchmarkRefusingVerify is what the check adds to a request's token
// verification (HS256): the same token through the bare verifier and
// through Refusing.
func BenchmarkRefusingVerify(b *testing.B) {
	store, err := embedded.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	r := realtime.NewRevocations(store, store.Bus(), nil, realtime.RevocationsConfig{}, quiet)
	for i := range 1000 {
		if err := r.Revoke(b.Context(), fmt.Sprintf("revoked-%d", i), time.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	v, err := auth.New(b.Context(), auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		b.Fatal(err)
	}
	tok := signJTI(b, "alice", "019a3c2e-7b1d-7f00-8000-000000000000")
	for name, v := range map[string]realtime.TokenVerifier{"bare": v, "refusing": r.Refusing(v)} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := v.Verify(b.Context(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
