package handlers

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/clientjs"
	"github.com/switchboard-dev/switchboard/peer"
	"github.com/switchboard-dev/switchboard/realtime"
)

// Deps are what the routes need.
type Deps struct {
	Store   api.Store
	Bus     api.Bus
	Records *realtime.Records
	Events  *realtime.Events
	Hub     *realtime.Hub
	RPC     *realtime.RPC
	Metrics *Metrics
	Log     *slog.Logger
	OpenAPI []byte
	// OpenMode serves requests without a token as an anonymous user.
	OpenMode bool
	// Verifier checks tokens; nil refuses every token.
	Verifier Verifier
	Bodies   *Bodies
	// Webhook logs users in (POST /auth/login); nil: login answers 503
	// AUTH_UNAVAILABLE (AUTH_WEBHOOK_URL is not set).
	Webhook Webhook
	// Issuer signs the server's tokens (JWT_SECRET); nil: none are issued.
	Issuer Issuer
	// Revoker revokes the token of a logout; nil: logout only clears the
	// cookie.
	Revoker Revoker
	// Origins are CORS_ORIGINS: pages of these origins, besides the
	// server's own, may refresh and log out with the cookie.
	Origins  Origins
	Presence *realtime.Presence // serves GET /presence
	// RateLimit is RATE_LIMIT and TRUST_PROXY (limits.go).
	RateLimit RateLimit
	// Demo serves GET /demo (DEMO=true); nil: no such route.
	Demo http.HandlerFunc
	// Sequencer is the lease of the instance that commits every
	// instance's writes (PEER_URL); nil: writes are served where they
	// arrive. Peers sends them to it, and Links takes them from the
	// other instances when this one holds it.
	Sequencer Sequencer
	Peers     *peer.Client
	Links     *peer.Server
}

// Routes returns the server's handler: every route of openapi.yaml, in its order.
func Routes(d Deps) http.Handler {
	r := chi.NewRouter()
	rate := newRateLimiter(d.RateLimit)
	r.Use(logRequests(d.Log, d.Metrics), corsHeaders(d.Origins), checkQuery)
	r.Get("/healthz", healthz)
	r.Get("/readyz", readyz(d.Store, d.Bus, d.Hub))
	r.Method(http.MethodGet, "/metrics", metrics(d.Metrics))
	r.Get("/openapi.yaml", spec(d.OpenAPI))
	r.Get("/client.js", clientjs.JS)
	r.Get("/client.d.ts", clientjs.DTS)
	if d.Demo != nil {
		r.Get("/demo", d.Demo)
	}

	if d.Sequencer != nil && d.Links != nil {
		// Any method: the link's answers to what is not one are 404, as
		// for a path that does not exist.
		r.HandleFunc(peer.Path, handle(d.Links.Link))
	}

	r.Group(func(r chi.Router) {
		r.Use(d.Bodies.limit, authenticate(d.Verifier, d.OpenMode))
		api := r.With(rate.limit)
		stream := refuseDraining(d.Hub, openStream(d.Hub, d.Log))
		// Writes may go to the sequencer (forward.go).
		wr := &writes{records: d.Records, events: d.Events, seq: d.Sequencer, peers: d.Peers, metrics: d.Metrics}

		api.Get("/records", listRecords(d.Records))
		api.Get("/records/*", getRecord(d.Records, stream))
		api.Head("/records/*", getRecord(d.Records, stream))
		api.Put("/records/*", writeRecord(wr))
		api.Patch("/records/*", writeRecord(wr))
		api.Delete("/records/*", writeRecord(wr))
		api.Post("/batch", batch(wr))

		api.Post("/events/*", publish(wr))

		api.Get("/stream", stream)
		api.Post("/stream/{stream}/subscriptions", changeSubscription(d.Hub))
		api.Delete("/stream/{stream}/subscriptions", changeSubscription(d.Hub))

		api.Post("/rpc/*", callRPC(d.RPC))
		api.Get("/rpc-requests", pollRPC(d.RPC))
		api.Post("/rpc-requests/{id}", answerRPC(d.RPC))

		api.Get("/presence", getPresence(d.Presence))
	})

	r.With(d.Bodies.limit, rate.limit).Post("/auth/login", login(d.Webhook, d.Issuer))
	r.With(d.Bodies.limit, allowCookie(d.Origins), authenticate(d.Verifier, d.OpenMode), rate.limit).Post("/auth/refresh", refresh(d.Issuer))
	r.With(d.Bodies.limit, allowCookie(d.Origins), rate.limit).Post("/auth/logout", logout(d.Verifier, d.Revoker, d.OpenMode))

	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, api.Errorf(api.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allow := allowed(r, req.URL.Path)
		w.Header().Set("Allow", allow)
		writeError(w, req, api.Errorf(api.CodeMethodNotAllowed, "%s is not allowed on %s; use %s", req.Method, req.URL.Path, allow))
	})
	return r
}

// allowed lists the methods that routes has for path, for 405's Allow.
func allowed(routes chi.Routes, path string) string {
	var ms []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if routes.Match(chi.NewRouteContext(), m, path) {
			ms = append(ms, m)
		}
	}
	return strings.Join(ms, ", ")
}
