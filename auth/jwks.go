package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// fetchTimeout bounds one fetch of the JWK Set, at start and after.
const fetchTimeout = 10 * time.Second

// newKeySet fetches cfg.JWKSURL's key set and returns the keyfunc that
// finds a token's key in it. A set that cannot be fetched at start is not
// an error: the server starts, refuses the tokens it cannot verify, and
// fetches the set again when a token names an unknown kid, at most once
// per cfg.RefreshEvery, and every hour regardless, until ctx ends.
func newKeySet(ctx context.Context, cfg Config) (func(context.Context) jwt.Keyfunc, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := cfg.RefreshEvery
	if every <= 0 {
		every = time.Minute
	}
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:      &http.Client{Timeout: fetchTimeout},
		HTTPTimeout: fetchTimeout,
		// A token with an unknown kid waits for a refresh only when one is
		// due soon; the wait also covers the fetch itself.
		RateLimitWaitMax:  fetchTimeout,
		RefreshInterval:   time.Hour,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(every), 1),
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "the JWK Set of JWKS_URL cannot be fetched; tokens signed with its keys are refused until it can", "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS_URL: %w", err)
	}
	return k.KeyfuncCtx, nil
}
