package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/handlers"
)

const usage = `Switchboard: records, events and RPC over plain HTTP and Server-Sent Events.

usage:
  switchboard                          run the server (configured by environment variables; see the README)
  switchboard serve                    the same
  switchboard migrate                  apply the Postgres migrations to DATABASE_DIRECT_URL (or DATABASE_URL) and exit
  switchboard rules check FILE         check a permissions file
  switchboard rules test FILE CASES    run rule test cases against a permissions file
  switchboard version                  print the version
  switchboard help                     print this help (also -h, --help)

a client of a running server (SWITCHBOARD_URL, SWITCHBOARD_TOKEN):
  switchboard get|put|patch|delete NAME [JSON]   read or write a record
      [--path P] [--if-match VERSION|*]          a path of it; only at that version
  switchboard emit NAME JSON                     publish an event
  switchboard call NAME JSON                     call an RPC
  switchboard tail [--from ID] SUB...            print a stream's frames, one JSON line each
                                                 (SUB: record:NAME, record:PREFIX/*, event:..., presence:..., listen:PREFIX/*)

The server listens on PORT (default 8080) and stores data in DATA_DIR
(default ./data), or in Postgres when DATABASE_URL is set. It ends
cleanly on SIGTERM or Ctrl-C. "switchboard rules --help" and
"switchboard COMMAND --help" tell more of each command.
`

// isHelp reports whether arg asks for the usage.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "--help" || arg == "-help"
}

// version is the module's version and the VCS revision the binary was
// built from, when the build recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "switchboard (unknown version)"
	}
	v := "switchboard " + bi.Main.Version
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		v += " (" + rev
		if modified == "true" {
			v += ", modified"
		}
		if at != "" {
			v += ", " + at
		}
		v += ")"
	}
	return v + " " + bi.GoVersion
}

// serveDebug serves pprof on addr (DEBUG_ADDR), a listener of its own so
// that profiles are never reachable on the public port, until stop is
// called.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on DEBUG_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("debug listener (pprof)", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// printUsage writes the usage to w.
func printUsage(w io.Writer) { fmt.Fprint(w, usage) }

// observe connects the metrics to what they measure: the engine's
// measures (stream ends, delivery lag, RPC calls), the RPC service's
// gauges, the Postgres listener's reconnects and notifications, and the
// auth webhook.
func observe(m *handlers.Metrics, a *app, bus api.Bus, login loginParts, log *slog.Logger) {
	measures := m.Measures(log)
	a.hub.Measure(measures)
	a.rpc.Measure(measures)
	m.RegisterRPC(a.rpc)
	if b, ok := bus.(interface{ Reconnects() int64 }); ok {
		m.RegisterListener(b.Reconnects)
	}
	if s, ok := a.store.(interface{ Notifications() (int64, int64) }); ok {
		m.RegisterNotifications(s.Notifications)
	}
	if w, ok := login.webhook.(webhook); ok {
		w.Observe = m.Webhook
	}
}
