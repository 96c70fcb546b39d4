// Package server is the Switchboard server as a program: it reads the
// configuration, opens the store, wires the engine (realtime) to the HTTP
// layer (handlers), serves until its context ends and then shuts down
// gracefully. It also runs the subcommands. The command at the repository's
// root only sets up signals and calls Run; tests call Run the same way, on
// 127.0.0.1:0 with a fake getenv.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/auth"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/demo"
	"github.com/switchboard-dev/switchboard/handlers"
	"github.com/switchboard-dev/switchboard/peer"
	"github.com/switchboard-dev/switchboard/realtime"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// Run starts the server and serves until ctx ends, then shuts down
// gracefully: new work is refused, streams are told to resume elsewhere,
// in-flight requests finish. args are the command line (args[1], when
// present, names a subcommand), getenv reads the configuration, stdout
// takes the log, and openapi is the OpenAPI document served at
// /openapi.yaml (the command embeds the repository's openapi.yaml).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, openapi []byte) error {
	if len(args) > 1 && args[1] == "rules" { // reads no configuration: usable in any CI
		return rulesCommand(ctx, args[2:], stdout)
	}
	if len(args) > 1 && cliCommands[args[1]] != "" { // a client of a running server
		return cliCommand(ctx, args[1], args[2:], getenv, stdout)
	}
	if len(args) > 1 && isHelp(args[1]) || len(args) > 2 && isHelp(args[2]) { // "serve --help" serves nothing
		printUsage(stdout)
		return nil
	}
	if len(args) > 1 && args[1] == "version" {
		fmt.Fprintln(stdout, version())
		return nil
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	out := newLineBuffer(stdout)
	defer out.Close()
	log := newLogger(cfg, out)
	if len(args) > 1 && args[1] != "serve" {
		return command(ctx, cfg, args[1], log)
	}
	if err := cfg.checkAuth(); err != nil {
		return err
	}
	cfg, guests := demoLogin(cfg, log)
	verifier, err := newVerifier(ctx, cfg, log)
	if err != nil {
		return err
	}
	login, err := newLogin(cfg, log)
	if err != nil {
		return err
	}
	if guests {
		login.webhook = demoWebhook{}
	}
	rs, err := startRules(cfg, log)
	if err != nil {
		return err
	}
	store, bus, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	return serve(ctx, cfg, log, wire(cfg, store, bus, verifier, login, log, openapi, rs))
}

// newVerifier returns the verifier of tokens, or nil when no key is
// configured (open mode only: every token sent is then refused). Its JWK
// Set, if any, is refreshed until ctx ends.
func newVerifier(ctx context.Context, cfg Config, log *slog.Logger) (handlers.Verifier, error) {
	ac, ok := cfg.authConfig(log)
	if !ok {
		return nil, nil
	}
	v, err := auth.New(ctx, ac)
	if err != nil {
		return nil, err
	}
	log.Info("tokens are verified", "jwt_secret", cfg.JWTSecret != "", "jwks_url", redacted(cfg.JWKSURL),
		"issuer", cfg.JWTIssuer, "audience", cfg.JWTAudience)
	return v, nil
}

// app is the server's parts, wired.
type app struct {
	store   api.Store
	hub     *realtime.Hub
	rpc     *realtime.RPC
	listen  *realtime.Listen
	bodies  *handlers.Bodies
	handler http.Handler

	presence *realtime.Presence
	perms    *realtime.Permissions // nil without PERMISSIONS_FILE

	revocations *realtime.Revocations // the revoked tokens; Load before serving, Run

	demo *demo.Provider      // DEMO=true: the demo's provider; else nil
	seq  *postgres.Sequencer // PEER_URL: the sequencer's lease; else nil
	pg   *postgres.Store     // with seq: its store
	// With PEER_URL: peers forwards writes to the sequencer, and links
	// takes other instances' writes when this one is it; else nil.
	peers *peer.Client
	links *peer.Server
	pace  *peer.Pace // with seq: the pace of this instance's feed (follow)
}

// wire builds the engine over store and bus, and the routes over it. rs
// are the permission rules, nil when there is no rules file.
func wire(cfg Config, store api.Store, bus api.Bus, verifier handlers.Verifier, login loginParts, log *slog.Logger, openapi []byte, rs *rules.Rules) *app {
	var access realtime.Access = realtime.AllowAll{}
	a := &app{store: store, bodies: handlers.NewBodies(cfg.MaxBodyBytes, cfg.BodyTimeout)}
	if cfg.PermissionsFile != "" {
		a.perms = realtime.NewPermissions(cfg.PermissionsFile, rs, store, log)
		access = a.perms
	}
	if cfg.Demo {
		access = demo.Trust(access) // the demo's provider may do what it does, whatever the rules
	}
	a.hub = realtime.NewHub(store, bus, access, realtime.HubConfig{
		Heartbeat:         cfg.HeartbeatInterval,
		MaxLifetime:       cfg.StreamMaxLifetime,
		Retry:             cfg.StreamRetry,
		DrainRetry:        cfg.DrainRetry,
		DrainSpread:       cfg.DrainRetrySpread,
		BufferBytes:       cfg.StreamBufferBytes,
		MaxSubscriptions:  cfg.MaxSubscriptions,
		MaxCollection:     cfg.MaxCollectionRecords,
		MaxStreams:        cfg.MaxStreams,
		MaxStreamsPerUser: cfg.MaxStreamsPerUser,
		Coalesce:          cfg.StreamCoalesce,
	}, log)
	instance := realtime.NewInstanceID() // names this process's presence and listening rows
	a.presence = realtime.NewPresence(store, bus, access, realtime.PresenceConfig{
		Instance:   instance,
		LeaveGrace: cfg.LeaveGrace,
	}, log)
	a.hub.SetPresence(a.presence, a.presence)
	a.listen = realtime.NewListen(store, bus, a.hub, realtime.ListenConfig{
		Instance:   instance,
		LeaveGrace: cfg.LeaveGrace,
	}, log)
	a.revocations = realtime.NewRevocations(store, bus, a.hub, realtime.RevocationsConfig{}, log)
	if verifier != nil {
		verifier = a.revocations.Refusing(verifier)
	}
	a.rpc = realtime.NewRPC(rpcQueue(store, bus), bus, access, realtime.RPCConfig{
		AckTimeout:  cfg.RPCAckTimeout,
		MaxAttempts: cfg.RPCMaxAttempts,

		MaxInFlightPerUser: cfg.MaxRPCInFlight,
	}, log)
	var demoPage http.HandlerFunc
	if cfg.Demo {
		a.demo = demo.New(demo.Services{Hub: a.hub, RPC: a.rpc, Log: log,
			Records: realtime.NewRecords(store, access, int(cfg.MaxRecordBytes))})
		demoPage = demo.Page
	}
	metrics := handlers.NewMetrics(&a.hub.Stats)
	if a.perms != nil {
		metrics.RegisterRules(&a.perms.Stats)
	}
	records, events := realtime.NewRecords(store, access, int(cfg.MaxRecordBytes)), realtime.NewEvents(store, access)
	var seq handlers.Sequencer // a nil interface when there is none
	if pg, ok := store.(*postgres.Store); ok && cfg.PeerURL != "" {
		a.seq, a.pg = pg.Sequencer(cfg.PeerURL), pg
		seq = a.seq
		metrics.RegisterSequencer(seq)
		a.pace = new(peer.Pace)
		metrics.RegisterFeed(pg.FeedNotifications, a.pace.Get)
		a.peers = &peer.Client{}
		a.links = &peer.Server{Peer: a.seq.Peer, Apply: peer.Local(records, events), Log: log, Feed: pg.Feed}
	}
	observe(metrics, a, bus, login, log)
	a.handler = handlers.Routes(handlers.Deps{
		Store:    store,
		Bus:      bus,
		Records:  records,
		Events:   events,
		Hub:      a.hub,
		RPC:      a.rpc,
		Presence: a.presence,
		Metrics:  metrics,
		Log:      log,
		OpenAPI:  openapi,
		OpenMode: cfg.AuthMode == "open",
		Verifier: verifier,
		Bodies:   a.bodies,
		Webhook:  login.webhook,
		Issuer:   login.issuer,
		Origins:  login.origins,
		Revoker:  a.revocations,

		RateLimit: handlers.RateLimit{PerSecond: cfg.RateLimit, TrustProxy: cfg.TrustProxy},
		Demo:      demoPage,
		Sequencer: seq,
		Peers:     a.peers,
		Links:     a.links,
	})
	return a
}

// serve listens and serves a until ctx ends, then drains and shuts down.
func serve(ctx context.Context, cfg Config, log *slog.Logger, a *app) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("HOST or PORT: listen: %w", err)
	}
	ln = handlers.Listener(ln)
	handler := a.handler
	if cfg.LogFormat == "gcp" { // lines logged for a request carry its trace
		handler = withTrace(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}

	// The fan-out and the log trimmer outlive ctx until every stream is gone.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	if err := a.revocations.Load(bg); err != nil { // bg: a server whose ctx ends at once still starts, then stops
		ln.Close()
		return err
	}
	go a.revocations.Run(bg)
	errc := make(chan error, 2)
	go func() {
		if err := a.hub.Run(bg); err != nil {
			errc <- fmt.Errorf("fan-out: %w", err)
		}
	}()
	go trimLoop(bg, a.store, cfg.StreamRetention, cfg.StreamRetentionBytes, a.hub.KeepOpen, log)
	go a.rpc.Run(bg)
	go a.listen.Run(bg)
	go reloadOnHangup(bg, cfg, a, log)
	if settles() {
		settleTicker := time.NewTicker(settleTick)
		defer settleTicker.Stop()
		go settleLoop(bg, settleTicker.C, readHeap(), settle, log)
	}
	// Presence stops after the streams: its last act lets its rows expire.
	presence, stopPresence := context.WithCancel(bg)
	presenceDone := make(chan struct{})
	go func() { a.presence.Run(presence); close(presenceDone) }()
	defer func() { stopPresence(); <-presenceDone }()
	if a.demo != nil { // stops before presence and the store
		defer runDemo(bg, a.demo)()
	}
	if a.seq != nil { // ends with ctx: gives the lease up as the drain begins
		seqCtx, stopSeq := context.WithCancel(ctx)
		seqDone := make(chan struct{})
		go func() { a.seq.Run(seqCtx); close(seqDone) }()
		defer func() { stopSeq(); <-seqDone }()
		// The feed outlives ctx: the draining streams take changes until they end.
		feeding, stopFeed := context.WithCancel(bg)
		followed := make(chan struct{})
		go func() { follow(feeding, a.seq, a.pg, a.hub, a.pace, a.peers.TLS, log); close(followed) }()
		defer func() { stopFeed(); <-followed }()
	}
	go func() { errc <- srv.Serve(ln) }()
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer stopDebug()
	}

	if cfg.AuthMode == "open" {
		log.Warn("AUTH_MODE=open: every request without a token is served as an anonymous user; for local development only")
	}
	if n := len(cfg.JWTSecret); n > 0 && n < auth.MinSecretBytes {
		log.Warn(fmt.Sprintf("JWT_SECRET has %d bytes: HS256 wants at least %d (RFC 7518), or a guessed secret signs tokens for anyone; use a random one, e.g. `openssl rand -hex 32`", n, auth.MinSecretBytes))
	}
	log.Info("listening", "addr", "http://"+ln.Addr().String(), "store", storeName(cfg))

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down")
	return shutdown(cfg, log, a, srv)
}

// drainListen is how long a draining server keeps listening at least (a
// tenth of SHUTDOWN_TIMEOUT when that is shorter).
const drainListen = time.Second

// shutdown drains: /readyz answers 503 and new streams, calls and polls
// are refused, every stream ends with its retry: hint (spread, so that
// clients do not all come back at once), and the server keeps listening
// for drainListen at least (a load balancer that polls /readyz sees it
// leave, and a client that comes meanwhile gets 503 with Retry-After,
// not a refused connection), and while the calls under way wait for
// their answers (at most RPC_ACK_TIMEOUT; other requests, writes among
// them, are served meanwhile). Then the listener closes and the requests
// under way finish.
// All of it has 90% of SHUTDOWN_TIMEOUT; what is left then is cut, so
// that the rest (the fan-out, presence, the store) closes within it and
// the process exits 0 before the platform kills it.
func shutdown(cfg Config, log *slog.Logger, a *app, srv *http.Server) error {
	a.hub.Drain()
	a.rpc.Drain()
	a.bodies.Drain()
	listened := time.After(min(drainListen, cfg.ShutdownTimeout/10))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout-cfg.ShutdownTimeout/10)
	defer cancel()
	streams := make(chan error, 1)
	go func() { streams <- a.hub.WaitStreams(ctx) }()
	a.rpc.WaitCalls(ctx)
	select {
	case <-listened:
	case <-ctx.Done():
	}
	if a.seq != nil {
		a.seq.Handover(ctx)
	}
	if a.links != nil { // hijacked: Shutdown would not wait for them
		a.links.Close(ctx)
		defer a.peers.Close() // after the requests under way, which may forward
	}
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
		log.Warn("shutdown: requests still under way at SHUTDOWN_TIMEOUT were cut")
		err = nil
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	if <-streams != nil {
		log.Warn("shutdown: streams whose clients took nothing at SHUTDOWN_TIMEOUT were cut without their retry hint")
	}
	return nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	switch cfg.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil))
	case "gcp":
		return slog.New(newGCPHandler(w, cfg.GoogleCloudProject))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// command runs a subcommand instead of the server.
func command(ctx context.Context, cfg Config, name string, log *slog.Logger) error {
	switch name {
	case "migrate": // Fly's release_command: migrate before the new version starts
		if cfg.DatabaseURL == "" {
			return errors.New("migrate: DATABASE_URL is not set (the embedded store needs no migrations)")
		}
		if err := postgres.Migrate(ctx, cmp.Or(cfg.DatabaseDirectURL, cfg.DatabaseURL)); err != nil {
			return err
		}
		log.Info("migrations applied")
		return nil
	}
	return fmt.Errorf("unknown command %q (the commands are serve, migrate, rules, version and help; see switchboard --help)", name)
}

// openStore opens Postgres when DATABASE_URL is set, else the embedded store.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (api.Store, api.Bus, error) {
	if cfg.DatabaseURL != "" {
		st, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.DatabaseDirectURL, log)
		if err != nil {
			if cfg.DatabaseDirectURL != "" {
				return nil, nil, fmt.Errorf("DATABASE_URL or DATABASE_DIRECT_URL: %w", err)
			}
			return nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		st.SetNotifyInterval(cfg.NotifyInterval)
		return st, st.Bus(), nil
	}
	st, err := embedded.Open(cfg.DataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	if cfg.EventAck == "written" {
		st.AckEventsWritten()
	}
	return st, st.Bus(), nil
}

// rpcQueue returns the store's RPC queue, if it has one (a shared database
// does: requesters and providers may sit on different instances);
// otherwise a queue in this process's memory, as for the embedded store.
func rpcQueue(store api.Store, bus api.Bus) api.RPCQueue {
	if s, ok := store.(interface{ RPC() api.RPCQueue }); ok {
		return s.RPC()
	}
	return embedded.NewRPCQueue(bus)
}

// storeName says which store serves, for the log (never a password).
func storeName(cfg Config) string {
	if cfg.DatabaseURL != "" {
		return "postgres"
	}
	return "embedded:" + cfg.DataDir
}

// redacted is a URL for the log, without a password it may hold.
func redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return ""
	}
	return u.Redacted()
}
