package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"

	"github.com/switchboard-dev/switchboard/auth"
	"github.com/switchboard-dev/switchboard/handlers"
)

// loginParts are what the /auth routes need: the webhook that logs users
// in, the issuer of the server's tokens, and the origins trusted with the
// cookie. A nil webhook or issuer is a feature not configured.
type loginParts struct {
	webhook handlers.Webhook
	issuer  handlers.Issuer
	origins handlers.Origins
}

// newLogin builds the login parts from cfg: the issuer with JWT_SECRET,
// and the webhook with AUTH_WEBHOOK_URL (checkAuth made sure that one
// comes with its secret and JWT_SECRET).
func newLogin(cfg Config, log *slog.Logger) (loginParts, error) {
	var p loginParts
	var err error
	if p.origins, err = handlers.ParseOrigins(cfg.CORSOrigins); err != nil {
		return p, err
	}
	if cfg.JWTSecret != "" {
		is, err := auth.NewIssuer(auth.IssuerConfig{
			Secret: []byte(cfg.JWTSecret), TTL: cfg.JWTTTL, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		})
		if err != nil {
			return p, err
		}
		p.issuer = is
	}
	if cfg.AuthWebhookURL != "" {
		p.webhook = webhook{auth.NewWebhook(cfg.AuthWebhookURL, []byte(cfg.AuthWebhookSecret), cfg.AuthWebhookTimeout)}
		u, _ := url.Parse(cfg.AuthWebhookURL)
		// Only the host: the URL's path or query may hold a key.
		log.Info("login through the auth webhook", "webhook_host", u.Host, "timeout", cfg.AuthWebhookTimeout.String(), "jwt_ttl", cfg.JWTTTL.String())
	}
	return p, nil
}

// webhook adapts auth.Webhook to handlers.Webhook.
type webhook struct{ *auth.Webhook }

func (w webhook) Login(ctx context.Context, credentials json.RawMessage, remoteAddr, userAgent string) (handlers.Identity, error) {
	id, err := w.Webhook.Login(ctx, credentials, auth.Connection{RemoteAddr: remoteAddr, UserAgent: userAgent})
	return handlers.Identity(id), err
}
