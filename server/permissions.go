package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// compileRules reads and compiles the rules file. The error names the
// file, and the line and reason of every problem.
func compileRules(file string) (*rules.Rules, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("PERMISSIONS_FILE: %w", err)
	}
	r, err := rules.Compile(file, src)
	if err != nil {
		return nil, fmt.Errorf("PERMISSIONS_FILE %s does not compile:\n%w", file, err)
	}
	return r, nil
}

// startRules compiles PERMISSIONS_FILE, if set, and says what the server
// enforces. Without a file it returns nil: everyone may do everything,
// which the log says loudly.
func startRules(cfg Config, log *slog.Logger) (*rules.Rules, error) {
	if cfg.PermissionsFile == "" {
		who := "every signed-in user"
		if cfg.AuthMode == "open" {
			who = "everyone, signed in or anonymous,"
		}
		log.Warn("PERMISSIONS_FILE is not set: " + who + " may read, write and delete every record, publish and " +
			"subscribe to every event, call and provide every RPC, and see everyone's presence; " +
			"set PERMISSIONS_FILE to a rules file before serving real users")
		return nil, nil
	}
	r, err := compileRules(cfg.PermissionsFile)
	if err != nil {
		return nil, err
	}
	log.Info("permission rules loaded", "file", cfg.PermissionsFile)
	return r, nil
}

// reloadOnHangup reloads the rules on every SIGHUP until ctx ends.
func reloadOnHangup(ctx context.Context, cfg Config, a *app, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			a.reloadRules(cfg.PermissionsFile, log)
		}
	}
}

// reloadRules reads the rules file again: a good file replaces the rules
// at once, a bad one is refused and the rules in force stay.
func (a *app) reloadRules(file string, log *slog.Logger) bool {
	if a.perms == nil {
		log.Warn("SIGHUP: no PERMISSIONS_FILE to reload (rules need one at start); everyone may still do everything")
		return false
	}
	r, err := compileRules(file)
	if err != nil {
		log.Error("SIGHUP: the new permission rules are refused; the rules in force stay", "file", file, "error", err.Error())
		return false
	}
	a.perms.Load(r)
	log.Info("SIGHUP: permission rules reloaded", "file", file)
	a.hub.RulesChanged() // open subscriptions the new rules refuse get denied
	return true
}
