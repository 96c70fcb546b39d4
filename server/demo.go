package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"

	"github.com/switchboard-dev/switchboard/demo"
	"github.com/switchboard-dev/switchboard/handlers"
)

// demoLogin says whether the demo's own login serves POST /auth/login
// (DEMO=true in open mode with no auth webhook: its users, guests named as
// they please, are then presence). It returns cfg with a JWT_SECRET to
// sign their tokens: a random one, for this process only, when none is
// set.
func demoLogin(cfg Config, log *slog.Logger) (Config, bool) {
	if !cfg.Demo || cfg.AuthMode != "open" || cfg.AuthWebhookURL != "" {
		return cfg, false
	}
	if cfg.JWTSecret == "" {
		b := make([]byte, 32)
		rand.Read(b)
		cfg.JWTSecret = hex.EncodeToString(b)
		log.Info("DEMO=true: guests log in with a name; their tokens are signed with a key of this process only (set JWT_SECRET to share one between instances)")
	}
	return cfg, true
}

// demoWebhook adapts demo.Login to handlers.Webhook.
type demoWebhook struct{}

func (demoWebhook) Login(_ context.Context, credentials json.RawMessage, _, _ string) (handlers.Identity, error) {
	id, clientData, err := demo.Login(credentials)
	return handlers.Identity{ID: id, ClientData: clientData}, err
}

// runDemo runs the demo's provider until the returned function is called,
// which returns once it has stopped.
func runDemo(ctx context.Context, p *demo.Provider) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}
