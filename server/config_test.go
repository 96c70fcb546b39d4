package server

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestConfigErrorsNameTheVariable: an invalid value stops the server at
// start with the variable's name.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	for key, value := range map[string]string{
		"PORT":                         "eighty",
		"HEARTBEAT_INTERVAL":           "15",
		"STREAM_RETENTION":             "-1h",
		"STREAM_RETENTION_BYTES":       "-1",
		"STREAM_MAX_LIFETIME":          "0s",
		"MAX_BODY_BYTES":               "0",
		"AUTH_MODE":                    "sometimes",
		"STREAM_BUFFER_BYTES":          "lots",
		"LOG_FORMAT":                   "xml",
		"RPC_ACK_TIMEOUT":              "5",
		"RPC_MAX_ATTEMPTS":             "0",
		"MAX_SUBSCRIPTIONS_PER_STREAM": "0",
		"MAX_RECORD_BYTES":             "0",
		"BODY_TIMEOUT":                 "0s",
		"JWT_TTL":                      "500ms",
		"AUTH_WEBHOOK_URL":             "login.example/hook",
		"AUTH_WEBHOOK_TIMEOUT":         "0s",
		"CORS_ORIGINS":                 "https://app.example/",
		"LEAVE_GRACE":                  "-1s",
		"RATE_LIMIT":                   "-1",
		"TRUST_PROXY":                  "sometimes",
		"MAX_STREAMS":                  "-1",
		"MAX_STREAMS_PER_USER":         "many",
		"MAX_RPC_IN_FLIGHT_PER_USER":   "-5",
		"EVENT_ACK":                    "fsynced",
		"PEER_URL":                     "10.0.0.1:8080",
		"NOTIFY_INTERVAL":              "21ms",
	} {
		env := map[string]string{"DATA_DIR": t.TempDir(), key: value}
		err := Run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%s: error %v does not name the variable", key, value, err)
		}
	}
}

// TestStartErrorsNameTheVariable: a value that passes the checks of
// form but fails at start (a store that does not open, a port taken)
// stops the server with the variable's name too.
func TestStartErrorsNameTheVariable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	for _, c := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"DATA_DIR": file}, "DATA_DIR"},
		{map[string]string{"DATABASE_URL": "garbage://x"}, "DATABASE_URL"},
		{map[string]string{"DATA_DIR": t.TempDir(), "HOST": "127.0.0.1", "PORT": port}, "PORT"},
	} {
		c.env["AUTH_MODE"] = "open"
		err := Run(context.Background(), nil, func(k string) string { return c.env[k] }, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%v: error %v does not name %s", c.env, err, c.name)
		}
	}
}

// TestPeerURL: PEER_URL expands ${VAR} (Fly.io's private address), and
// is refused without DATABASE_URL, without a scheme or with a path.
func TestPeerURL(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://db.example/app", "FLY_PRIVATE_IP": "fdaa::3", "PEER_URL": "http://[${FLY_PRIVATE_IP}]:8080"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil || cfg.PeerURL != "http://[fdaa::3]:8080" {
		t.Fatalf("PEER_URL = %q, %v", cfg.PeerURL, err)
	}
	for _, bad := range []map[string]string{
		{"PEER_URL": "http://10.0.0.1:8080"},
		{"PEER_URL": "10.0.0.1:8080", "DATABASE_URL": "postgres://db.example/app"},
		{"PEER_URL": "http://10.0.0.1:8080/switchboard", "DATABASE_URL": "postgres://db.example/app"},
	} {
		if _, err := loadConfig(func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), "PEER_URL") {
			t.Errorf("%v: %v, want PEER_URL refused", bad, err)
		}
	}
}

// TestUnknownCommand: a mistyped subcommand is an error, not a server.
func TestUnknownCommand(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir()}
	err := Run(context.Background(), []string{"switchboard", "migrat"}, func(k string) string { return env[k] }, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "migrat") {
		t.Fatalf("error %v", err)
	}
}

// TestStreamBufferHoldsTheLargestFrame: STREAM_BUFFER_BYTES must hold two
// of the largest frames that MAX_RECORD_BYTES and MAX_BODY_BYTES allow,
// else a stream could be handed a frame it can never queue.
func TestStreamBufferHoldsTheLargestFrame(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		fail string // the variable named, or "" when valid
	}{
		{map[string]string{}, ""},
		{map[string]string{"STREAM_BUFFER_BYTES": "1048576"}, "STREAM_BUFFER_BYTES"},
		{map[string]string{"STREAM_BUFFER_BYTES": "1048576", "MAX_RECORD_BYTES": "262144", "MAX_BODY_BYTES": "262144"}, ""},
		{map[string]string{"STREAM_BUFFER_BYTES": "1048576", "MAX_RECORD_BYTES": "262144"}, "STREAM_BUFFER_BYTES"},
		{map[string]string{"MAX_RECORD_BYTES": "8388608"}, "STREAM_BUFFER_BYTES"},
		{map[string]string{"MAX_RECORD_BYTES": "0"}, "MAX_RECORD_BYTES"},
		{map[string]string{"MAX_BODY_BYTES": "9223372036854775807"}, "STREAM_BUFFER_BYTES"},
	} {
		_, err := loadConfig(func(k string) string { return tc.env[k] })
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.fail)
		}
	}
}

// TestAuthConfig: token mode needs a key to verify tokens with; a
// JWKS_URL that is not an http(s) URL is refused, and an error never shows
// the secret; a short secret is taken (the server warns of it).
func TestAuthConfig(t *testing.T) {
	const short = "too-short-a-secret"
	for _, tc := range []struct {
		env  map[string]string
		fail []string // what the error names; nil when the server starts
	}{
		{map[string]string{"AUTH_MODE": "token"}, []string{"JWT_SECRET", "JWKS_URL", "AUTH_MODE=open"}},
		{map[string]string{"AUTH_MODE": "token", "JWT_SECRET": short}, nil},
		{map[string]string{"AUTH_MODE": "open", "JWT_SECRET": short}, nil},
		{map[string]string{"JWKS_URL": "keys.json"}, []string{"JWKS_URL"}},
		{map[string]string{"JWKS_URL": "ftp://id.example/keys"}, []string{"JWKS_URL"}},
		{map[string]string{"AUTH_MODE": "token", "JWT_SECRET": "0123456789abcdef0123456789abcdef"}, nil},
		{map[string]string{"AUTH_MODE": "open"}, nil},
		{map[string]string{"AUTH_MODE": "open", "AUTH_WEBHOOK_URL": "http://127.0.0.1:9/login", "JWT_SECRET": "0123456789abcdef0123456789abcdef"}, []string{"AUTH_WEBHOOK_SECRET"}},
		{map[string]string{"AUTH_MODE": "open", "AUTH_WEBHOOK_URL": "http://127.0.0.1:9/login", "AUTH_WEBHOOK_SECRET": "s"}, []string{"JWT_SECRET"}},
		{map[string]string{"AUTH_WEBHOOK_URL": "http://127.0.0.1:9/login", "AUTH_WEBHOOK_SECRET": "s", "JWT_SECRET": "0123456789abcdef0123456789abcdef", "JWT_TTL": "2s", "CORS_ORIGINS": "https://a.example,http://localhost:3000"}, nil},
	} {
		env := map[string]string{"DATA_DIR": t.TempDir(), "HOST": "127.0.0.1", "PORT": "0"}
		for k, v := range tc.env {
			env[k] = v
		}
		ctx, cancel := context.WithCancel(context.Background())
		if tc.fail == nil {
			cancel() // a server that starts stops at once
		}
		err := Run(ctx, nil, func(k string) string { return env[k] }, io.Discard, nil)
		cancel()
		if tc.fail == nil {
			if err != nil {
				t.Errorf("%v: %v", tc.env, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%v: the server started", tc.env)
			continue
		}
		for _, want := range tc.fail {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error %q does not name %s", tc.env, err, want)
			}
		}
		if strings.Contains(err.Error(), short) {
			t.Errorf("%v: error %q shows the secret", tc.env, err)
		}
	}
}
