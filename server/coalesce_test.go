package server

import (
	"strings"
	"testing"
	"time"
)

// TestStreamCoalesce: STREAM_COALESCE takes a duration from 0 (off) to
// 1ms, 1ms by default; anything else stops the server at start with
// the variable named.
func TestStreamCoalesce(t *testing.T) {
	for value, want := range map[string]time.Duration{
		"": time.Millisecond, "0": 0, "0s": 0, "250us": 250 * time.Microsecond, "1ms": time.Millisecond,
	} {
		cfg, err := loadConfig(func(k string) string {
			if k == "STREAM_COALESCE" {
				return value
			}
			return ""
		})
		if err != nil || cfg.StreamCoalesce != want {
			t.Errorf("STREAM_COALESCE=%q: %v, %v; want %v", value, cfg.StreamCoalesce, err, want)
		}
	}
	for _, value := range []string{"2ms", "1001us", "-1us", "soon", "5"} {
		_, err := loadConfig(func(k string) string {
			if k == "STREAM_COALESCE" {
				return value
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "STREAM_COALESCE") {
			t.Errorf("STREAM_COALESCE=%q: error %v, want one naming the variable", value, err)
		}
	}
}
