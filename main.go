// Command switchboard is a realtime server: records, events and RPC over
// plain HTTP and Server-Sent Events. See the README.
package main

import (
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
	if len(args) > 1 {
		return fmt.Errorf("unknown command %q", args[1])
	}
	log := newLogger(cfg, stdout)
	store, bus, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()

	var access realtime.Access = realtime.AllowAll{}
	hub := realtime.NewHub(store, bus, access, realtime.HubConfig{
		Heartbeat:   cfg.HeartbeatInterval,
		MaxLifetime: cfg.StreamMaxLifetime,
		Retry:       cfg.StreamRetry,
		BufferBytes: cfg.StreamBufferBytes,
	}, log)
	handler := handlers.Routes(handlers.Deps{
		Store:    store,
		Bus:      bus,
		Records:  realtime.NewRecords(store, access),
		Events:   realtime.NewEvents(store, access),
		Hub:      hub,
		Metrics:  handlers.NewMetrics(&hub.Stats),
		Log:      log,
		OpenAPI:  openapiYAML,
		OpenMode: cfg.AuthMode == "open",
		MaxBody:  cfg.MaxBodyBytes,
	})

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
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
	go trimLoop(bg, store, cfg.StreamRetention, log)
	go func() { errc <- srv.Serve(ln) }()

	if cfg.AuthMode == "open" {
		log.Warn("AUTH_MODE=open: every request without a token is served as an anonymous user; for local development only")
	}
	log.Info("listening", "addr", "http://"+ln.Addr().String(), "store", cfg.DataDir)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down")
	hub.Drain()
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

// openStore opens the backend the configuration names.
func openStore(cfg Config) (api.Store, api.Bus, error) {
	st, err := embedded.Open(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	return st, st.Bus(), nil
}

// trimLoop removes changes and streams older than the retention window.
func trimLoop(ctx context.Context, store api.Store, retention time.Duration, log *slog.Logger) {
	every := min(retention/4, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := store.Trim(ctx, time.Now().Add(-retention)); err != nil && ctx.Err() == nil {
				log.Error("trim change log", "err", err)
			}
		}
	}
}
