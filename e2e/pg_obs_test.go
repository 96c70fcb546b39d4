package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// TestPGObservability: on Postgres, a lost notification listener shows in
// switchboard_listener_reconnects_total and in /readyz until it is back;
// a write's notification is counted; and a shutdown with streams open
// logs no WARN or ERROR.
func TestPGObservability(t *testing.T) {
	url, servers := pgServers(t, 1, nil)
	srv := servers[0]
	waitSample(t, srv.URL, "switchboard_listener_reconnects_total", 0)
	testkit.ExecSQL(t, url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'switchboard-listener' AND datname = current_database()`)
	waitSample(t, srv.URL, "switchboard_listener_reconnects_total", 1)
	waitReadyz(t, srv.URL, http.StatusOK, 30*time.Second)

	var ids []string
	for range 2 {
		c := openSSE(t, srv.URL+"/stream?record=obs/pg&presence=*", "")
		ids = append(ids, c.Expect(t, "ready").Decode(t)["stream"].(string))
	}
	put(t, srv.URL, "obs/pg", `1`)
	waitSample(t, srv.URL, "switchboard_notified_groups_total", 1)
	waitSample(t, srv.URL, "switchboard_notify_transactions_total", 1)
	srv.Stop(t)
	lines := logLines(t, srv.Log())
	down := false
	for _, l := range lines {
		down = down || l["msg"] == "shutting down"
		if level := l["level"]; down && (level == "WARN" || level == "ERROR") {
			t.Errorf("a clean shutdown on Postgres logged %v", l)
		}
	}
	for _, id := range ids {
		if ls := find(lines, "stream ended", "stream", id); len(ls) != 1 || ls[0]["reason"] != "drain" {
			t.Errorf("end of stream %s: %v, want one line with reason drain", id, ls)
		}
	}
}
