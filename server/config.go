package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/switchboard-dev/switchboard/auth"
	"github.com/switchboard-dev/switchboard/handlers"
	"github.com/switchboard-dev/switchboard/realtime"
)

// Config is every setting of the server, read from the environment once at
// start. The README's configuration table lists the same variables.
type Config struct {
	Host                 string        `env:"HOST"`
	DebugAddr            string        `env:"DEBUG_ADDR"` // pprof on a listener of its own; unset: none
	Port                 int           `env:"PORT" envDefault:"8080"`
	DataDir              string        `env:"DATA_DIR" envDefault:"./data"`
	DatabaseURL          string        `env:"DATABASE_URL"`
	DatabaseDirectURL    string        `env:"DATABASE_DIRECT_URL"`
	AuthMode             string        `env:"AUTH_MODE" envDefault:"token"`
	JWTSecret            string        `env:"JWT_SECRET"` // never logged
	JWKSURL              string        `env:"JWKS_URL"`
	JWTIssuer            string        `env:"JWT_ISSUER"`
	JWTAudience          string        `env:"JWT_AUDIENCE"`
	JWTTTL               time.Duration `env:"JWT_TTL" envDefault:"1h"`
	AuthWebhookURL       string        `env:"AUTH_WEBHOOK_URL"`
	AuthWebhookSecret    string        `env:"AUTH_WEBHOOK_SECRET"` // never logged
	AuthWebhookTimeout   time.Duration `env:"AUTH_WEBHOOK_TIMEOUT" envDefault:"5s"`
	CORSOrigins          string        `env:"CORS_ORIGINS"`
	MaxBodyBytes         int64         `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	MaxRecordBytes       int64         `env:"MAX_RECORD_BYTES" envDefault:"1048576"`
	BodyTimeout          time.Duration `env:"BODY_TIMEOUT" envDefault:"10s"`
	HeartbeatInterval    time.Duration `env:"HEARTBEAT_INTERVAL" envDefault:"15s"`
	StreamRetention      time.Duration `env:"STREAM_RETENTION" envDefault:"1h"`
	StreamRetentionBytes int64         `env:"STREAM_RETENTION_BYTES" envDefault:"1073741824"`
	StreamMaxLifetime    time.Duration `env:"STREAM_MAX_LIFETIME" envDefault:"55m"`
	StreamRetry          time.Duration `env:"STREAM_RETRY" envDefault:"1s"`
	StreamBufferBytes    int           `env:"STREAM_BUFFER_BYTES" envDefault:"4194304"`
	StreamCoalesce       time.Duration `env:"STREAM_COALESCE" envDefault:"1ms"` // how long deliveries wait to share a write; 0 off, at most 1ms
	MaxSubscriptions     int           `env:"MAX_SUBSCRIPTIONS_PER_STREAM" envDefault:"1000"`
	MaxCollectionRecords int           `env:"MAX_COLLECTION_RECORDS" envDefault:"10000"`
	ShutdownTimeout      time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`
	DrainRetry           time.Duration `env:"DRAIN_RETRY" envDefault:"3s"`        // the shortest retry: hint at a drain; outlasts a ~2 s restart
	DrainRetrySpread     time.Duration `env:"DRAIN_RETRY_SPREAD" envDefault:"5s"` // hints spread uniformly over this much more
	RPCAckTimeout        time.Duration `env:"RPC_ACK_TIMEOUT" envDefault:"5s"`
	RPCMaxAttempts       int           `env:"RPC_MAX_ATTEMPTS" envDefault:"3"`
	LeaveGrace           time.Duration `env:"LEAVE_GRACE" envDefault:"5s"`
	LogFormat            string        `env:"LOG_FORMAT" envDefault:"json"`
	GoogleCloudProject   string        `env:"GOOGLE_CLOUD_PROJECT"` // LOG_FORMAT=gcp: the project of the traces
	PermissionsFile      string        `env:"PERMISSIONS_FILE"`
	RateLimit            float64       `env:"RATE_LIMIT" envDefault:"0"`
	TrustProxy           bool          `env:"TRUST_PROXY" envDefault:"false"`
	MaxStreams           int           `env:"MAX_STREAMS" envDefault:"0"`
	MaxStreamsPerUser    int           `env:"MAX_STREAMS_PER_USER" envDefault:"100"`
	MaxRPCInFlight       int           `env:"MAX_RPC_IN_FLIGHT_PER_USER" envDefault:"100"`
	Demo                 bool          `env:"DEMO" envDefault:"false"` // the live demo at /demo and its provider
	// EventAck is when a publish is answered: "durable" (its event is
	// fsynced) or "written" (written to the log file, not yet fsynced;
	// the embedded store only): see embedded.Store.AckEventsWritten.
	EventAck string `env:"EVENT_ACK" envDefault:"durable"`
	// PeerURL is where the other instances reach this one (Postgres only):
	// set, the instances agree on one of them that commits the writes of
	// all (db/postgres's Sequencer). ${VAR} in it is expanded, so that
	// Fly.io's http://[${FLY_PRIVATE_IP}]:8080 works as written.
	PeerURL string `env:"PEER_URL"`
	// NotifyInterval is the least time between two of this instance's
	// notifications of its commits to the others (Postgres only): while
	// it commits more often, they go together (db/postgres's announcer).
	NotifyInterval time.Duration `env:"NOTIFY_INTERVAL" envDefault:"0s"`
}

// loadConfig reads and validates the configuration. An error names the
// variable at fault.
func loadConfig(getenv func(string) string) (Config, error) {
	var cfg Config
	vars := make(map[string]string)
	t := reflect.TypeOf(cfg)
	for i := range t.NumField() {
		key := envKey(t.Field(i))
		if v := getenv(key); v != "" {
			vars[key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) && len(agg.Errors) > 0 {
			err = agg.Errors[0]
		}
		var pe env.ParseError
		if errors.As(err, &pe) {
			f, _ := t.FieldByName(pe.Name)
			return cfg, fmt.Errorf("invalid %s=%q: %v", envKey(f), vars[envKey(f)], pe.Err)
		}
		return cfg, err
	}
	cfg.PeerURL = os.Expand(cfg.PeerURL, getenv)
	return cfg, cfg.validate()
}

func envKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return key
}

func (c Config) validate() error {
	minBuffer := realtime.MinBufferBytes(c.MaxRecordBytes, c.MaxBodyBytes)
	checks := []struct {
		name, want string
		ok         bool
	}{
		{"PORT", "a port from 0 to 65535", c.Port >= 0 && c.Port <= 65535},
		{"MAX_BODY_BYTES", "a positive number of bytes", c.MaxBodyBytes > 0},
		{"MAX_RECORD_BYTES", "a number of bytes from 1 to 1 GiB", c.MaxRecordBytes > 0 && c.MaxRecordBytes <= 1<<30},
		{"BODY_TIMEOUT", "a positive duration", c.BodyTimeout > 0},
		{"HEARTBEAT_INTERVAL", "a positive duration", c.HeartbeatInterval > 0},
		{"STREAM_RETENTION", "a positive duration", c.StreamRetention > 0},
		{"STREAM_RETENTION_BYTES", "0 (no size bound) or a positive number of bytes", c.StreamRetentionBytes >= 0},
		{"STREAM_MAX_LIFETIME", "a positive duration", c.StreamMaxLifetime > 0},
		{"STREAM_RETRY", "a positive duration", c.StreamRetry > 0},
		{"STREAM_BUFFER_BYTES", "a positive number of bytes", c.StreamBufferBytes > 0},
		// Every frame a write can cause must fit a stream's buffer, twice.
		{"STREAM_BUFFER_BYTES", fmt.Sprintf("at least %d bytes, for two of the largest frames that MAX_RECORD_BYTES and MAX_BODY_BYTES allow", minBuffer),
			int64(c.StreamBufferBytes) >= minBuffer},
		{"STREAM_COALESCE", fmt.Sprintf("a duration from 0s (off) to %v", realtime.MaxCoalesce),
			c.StreamCoalesce >= 0 && c.StreamCoalesce <= realtime.MaxCoalesce},
		{"MAX_SUBSCRIPTIONS_PER_STREAM", "a positive whole number", c.MaxSubscriptions > 0},
		{"MAX_COLLECTION_RECORDS", "a positive whole number", c.MaxCollectionRecords > 0},
		{"SHUTDOWN_TIMEOUT", "a positive duration", c.ShutdownTimeout > 0},
		{"DRAIN_RETRY", "a duration from 1ms to 1h", c.DrainRetry >= time.Millisecond && c.DrainRetry <= time.Hour},
		{"DRAIN_RETRY_SPREAD", "a duration from 0s to 1h", c.DrainRetrySpread >= 0 && c.DrainRetrySpread <= time.Hour},
		{"RPC_ACK_TIMEOUT", "a duration from 10ms to 1m", c.RPCAckTimeout >= 10*time.Millisecond && c.RPCAckTimeout <= time.Minute},
		{"RPC_MAX_ATTEMPTS", "a whole number from 1 to 100", c.RPCMaxAttempts >= 1 && c.RPCMaxAttempts <= 100},
		{"LEAVE_GRACE", "a duration from 0s to 5m", c.LeaveGrace >= 0 && c.LeaveGrace <= 5*time.Minute},
		// Below the 50 ms after which a read elsewhere stops waiting for a
		// notification and flushes the WAL itself (db/postgres's flushAfter).
		{"NOTIFY_INTERVAL", "a duration from 0s to 20ms", c.NotifyInterval >= 0 && c.NotifyInterval <= 20*time.Millisecond},
		{"AUTH_MODE", `"open" or "token"`, c.AuthMode == "open" || c.AuthMode == "token"},
		{"LOG_FORMAT", `"json", "text" or "gcp"`, c.LogFormat == "json" || c.LogFormat == "text" || c.LogFormat == "gcp"},
		{"JWKS_URL", "an absolute http:// or https:// URL", c.JWKSURL == "" || isHTTPURL(c.JWKSURL)},
		{"JWT_TTL", "a duration of at least 1s (a token's exp counts whole seconds)", c.JWTTTL >= time.Second},
		{"AUTH_WEBHOOK_URL", "an absolute http:// or https:// URL", c.AuthWebhookURL == "" || isHTTPURL(c.AuthWebhookURL)},
		{"AUTH_WEBHOOK_TIMEOUT", "a positive duration", c.AuthWebhookTimeout > 0},
		{"RATE_LIMIT", "0 (off) or a positive number of requests per second, at most 1000000", c.RateLimit >= 0 && c.RateLimit <= 1e6},
		{"MAX_STREAMS", "0 (no bound) or a positive whole number", c.MaxStreams >= 0},
		{"MAX_STREAMS_PER_USER", "0 (no bound) or a positive whole number", c.MaxStreamsPerUser >= 0},
		{"MAX_RPC_IN_FLIGHT_PER_USER", "0 (no bound) or a positive whole number", c.MaxRPCInFlight >= 0},
		{"PEER_URL", "an absolute http:// or https:// URL at which the other instances reach this one, with DATABASE_URL set",
			c.PeerURL == "" || isBaseURL(c.PeerURL) && c.DatabaseURL != ""},
		{"EVENT_ACK", `"durable" or "written" ("written" with the embedded store only: DATABASE_URL unset)`,
			c.EventAck == "durable" || c.EventAck == "written" && c.DatabaseURL == ""},
	}
	for _, c := range checks {
		if !c.ok {
			return fmt.Errorf("invalid %s: must be %s", c.name, c.want)
		}
	}
	if _, _, err := net.SplitHostPort(c.DebugAddr); c.DebugAddr != "" && err != nil {
		return fmt.Errorf("invalid DEBUG_ADDR: must be host:port, such as 127.0.0.1:6060 (%v)", err)
	}
	if _, err := handlers.ParseOrigins(c.CORSOrigins); err != nil {
		return fmt.Errorf("invalid CORS_ORIGINS: %w", err)
	}
	return nil
}

// checkAuth says whether the server can serve in its AUTH_MODE: outside
// open mode every request needs a token, so something must verify them.
// Subcommands do not need it.
func (c Config) checkAuth() error {
	if c.AuthMode == "token" && c.JWTSecret == "" && c.JWKSURL == "" {
		return errors.New("AUTH_MODE=token needs JWT_SECRET (HS256 tokens) or JWKS_URL (an identity provider's keys), or both; " +
			"set AUTH_MODE=open to serve requests without a token as anonymous users")
	}
	if c.AuthWebhookURL != "" && c.AuthWebhookSecret == "" {
		return errors.New("AUTH_WEBHOOK_URL needs AUTH_WEBHOOK_SECRET: the webhook checks the X-Signature made with it to know that the server calls it")
	}
	if c.AuthWebhookURL != "" && c.JWTSecret == "" {
		return errors.New("AUTH_WEBHOOK_URL needs JWT_SECRET: the tokens that login issues are signed with it")
	}
	return nil
}

// authConfig is the verifier's configuration, or false when no key is
// configured.
func (c Config) authConfig(log *slog.Logger) (auth.Config, bool) {
	return auth.Config{
		Secret:   []byte(c.JWTSecret),
		JWKSURL:  c.JWKSURL,
		Issuer:   c.JWTIssuer,
		Audience: c.JWTAudience,
		Log:      log,
	}, c.JWTSecret != "" || c.JWKSURL != ""
}

// isBaseURL reports whether s is an http:// or https:// URL with nothing
// after its host and port: a server's address, to which paths are added.
func isBaseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && isHTTPURL(s) && u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
