package main

import (
	"context"
	"io"
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
		"STREAM_MAX_LIFETIME":          "0s",
		"MAX_BODY_BYTES":               "0",
		"AUTH_MODE":                    "sometimes",
		"STREAM_BUFFER_BYTES":          "lots",
		"LOG_FORMAT":                   "xml",
		"RPC_ACK_TIMEOUT":              "5",
		"RPC_MAX_ATTEMPTS":             "0",
		"MAX_SUBSCRIPTIONS_PER_STREAM": "0",
	} {
		env := map[string]string{"DATA_DIR": t.TempDir(), key: value}
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%s: error %v does not name the variable", key, value, err)
		}
	}
}

// TestUnknownCommand: a mistyped subcommand is an error, not a server.
func TestUnknownCommand(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir()}
	err := run(context.Background(), []string{"switchboard", "migrat"}, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "migrat") {
		t.Fatalf("error %v", err)
	}
}
