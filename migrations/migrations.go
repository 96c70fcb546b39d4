// Package migrations holds the Postgres schema as numbered SQL files in
// goose's format, embedded in the binary. db/postgres applies them at start
// and from the migrate subcommand; never edit a file that has shipped, add
// the next number instead.
package migrations

import "embed"

// FS holds the migration files (0001_init.sql, ...) at its root.
//
//go:embed *.sql
var FS embed.FS
