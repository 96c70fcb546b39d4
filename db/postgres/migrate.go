package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/switchboard-dev/switchboard/migrations"
)

// Migrate applies the pending migrations to the database at directURL (a
// direct connection: the migration lock is a session-level advisory lock,
// which a pooler in transaction mode would not keep). Instances that
// migrate at the same time wait for each other; the migrations run once.
func Migrate(ctx context.Context, directURL string) error {
	return migrate(ctx, directURL, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func migrate(ctx context.Context, directURL string, log *slog.Logger) error {
	cfg, err := directConfig(directURL)
	if err != nil {
		return fmt.Errorf("parse direct database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	// Try the lock every second for up to 5 minutes (the default probes
	// every 5 s, which slows down instances that start together).
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(log),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	return nil
}

// directConfig parses the URL of a single connection. It goes through the
// pool's parser so that pool settings (pool_max_conns, ...) in a URL that
// also serves the pool are dropped rather than sent to the server, which
// would refuse them as unknown parameters.
func directConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	return cfg.ConnConfig, nil
}
