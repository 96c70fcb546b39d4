// Command switchboard is a realtime server: records, events and RPC over
// plain HTTP and Server-Sent Events. See the README.
package main

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/embedded"
	"github.com/switchboard-dev/switchboard/db/postgres"
	"github.com/switchboard-dev/switchboard/handlers"
	"github.com/switchboard-dev/switchboard/realtime"
)

//go:embed openapi.yaml
var openapiYAML []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

// run starts the server and serves until ctx ends, then shuts down
// gracefully: new work is refused, streams are told to resume elsewhere,
// in-flight requests finish.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	out := newLineBuffer(stdout)
	defer out.Close()
	log := newLogger(cfg, out)
	if len(args) > 1 {
		return command(ctx, cfg, args[1], log)
	}
	store, bus, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()

	var access realtime.Access = realtime.AllowAll{}
	hub := realtime.NewHub(store, bus, access, realtime.HubConfig{
		Heartbeat:        cfg.HeartbeatInterval,
		MaxLifetime:      cfg.StreamMaxLifetime,
		Retry:            cfg.StreamRetry,
		BufferBytes:      cfg.StreamBufferBytes,
		MaxSubscriptions: cfg.MaxSubscriptions,
	}, log)
	rpc := realtime.NewRPC(rpcQueue(store, bus), bus, access, realtime.RPCConfig{
		AckTimeout:  cfg.RPCAckTimeout,
		MaxAttempts: cfg.RPCMaxAttempts,
	}, log)
	bodies := handlers.NewBodies(cfg.MaxBodyBytes, cfg.BodyTimeout)
	handler := handlers.Routes(handlers.Deps{
		Store:    store,
		Bus:      bus,
		Records:  realtime.NewRecords(store, access, int(cfg.MaxRecordBytes)),
		Events:   realtime.NewEvents(store, access),
		Hub:      hub,
		RPC:      rpc,
		Metrics:  handlers.NewMetrics(&hub.Stats),
		Log:      log,
		OpenAPI:  openapiYAML,
		OpenMode: cfg.AuthMode == "open",
		Bodies:   bodies,
	})

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln = handlers.Listener(ln)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}

	// The fan-out and the log trimmer outlive ctx until every stream is gone.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	errc := make(chan error, 2)
	go func() {
		if err := hub.Run(bg); err != nil {
			errc <- fmt.Errorf("fan-out: %w", err)
		}
	}()
	go trimLoop(bg, store, cfg.StreamRetention, cfg.StreamRetentionBytes, log)
	go rpc.Run(bg)
	go func() { errc <- srv.Serve(ln) }()

	if cfg.AuthMode == "open" {
		log.Warn("AUTH_MODE=open: every request without a token is served as an anonymous user; for local development only")
	}
	log.Info("listening", "addr", "http://"+ln.Addr().String(), "store", storeName(cfg))

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down")
	hub.Drain()
	rpc.Drain()
	bodies.Drain()
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
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
	return fmt.Errorf("unknown command %q (the only one is \"migrate\")", name)
}

// openStore opens Postgres when DATABASE_URL is set, else the embedded store.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (api.Store, api.Bus, error) {
	if cfg.DatabaseURL != "" {
		st, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.DatabaseDirectURL, log)
		if err != nil {
			return nil, nil, err
		}
		return st, st.Bus(), nil
	}
	st, err := embedded.Open(cfg.DataDir)
	if err != nil {
		return nil, nil, err
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

// sizeTrimEvery is how often the log is trimmed when it has a size bound,
// so that a burst outgrows the bound by little: at the fastest rate
// measured (~27 GB/h, 7.5 MB/s) by about 40 MB between two trims.
const sizeTrimEvery = 5 * time.Second

// trimLoop removes changes and streams older than the retention window
// every min(retention/4, 1m) and, with a size bound (maxBytes > 0), the
// oldest changes beyond it every sizeTrimEvery. The trims in between pass
// no age, which spares the embedded store a walk over every stream.
func trimLoop(ctx context.Context, store api.Store, retention time.Duration, maxBytes int64, log *slog.Logger) {
	ageEvery := min(retention/4, time.Minute)
	every := ageEvery
	if maxBytes > 0 {
		every = min(every, sizeTrimEvery)
	}
	perAge := max(1, int(ageEvery/every)) // trims per trim by age
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o := api.TrimOptions{MaxBytes: maxBytes}
		if i%perAge == 0 {
			o.Before = time.Now().Add(-retention)
		}
		if err := store.Trim(ctx, o); err != nil && ctx.Err() == nil {
			log.Error("trim change log", "err", err)
		}
	}
}
