package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the flusher and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines reach the writer within the interval without a Close, again
// and again, and no timer waits once they have (an idle server does not
// wake); Close writes the rest at once, and so is every line after it.
func TestLineBuffer(t *testing.T) {
	var out syncBuffer
	b := newLineBuffer(&out)
	want := ""
	for _, line := range []string{"one\n", "two\n"} {
		b.Write([]byte(line))
		want += line
		for deadline := time.Now().Add(5 * time.Second); out.String() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 5s the writer holds %q, want %q", out.String(), want)
			}
		}
		b.mu.Lock()
		armed := b.armed
		b.mu.Unlock()
		if armed {
			t.Fatal("the timer is still armed once the buffer was written out")
		}
	}
	b.Write([]byte("three\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != want+"three\n" {
		t.Errorf("after Close the writer holds %q, want every line", got)
	}
	b.Write([]byte("four\n"))
	if got := out.String(); got != want+"three\nfour\n" {
		t.Errorf("a line after Close: the writer holds %q", got)
	}
}

// gcpLine logs one line through LOG_FORMAT=gcp's logger and returns it,
// decoded.
func gcpLine(t *testing.T, project string, log func(*slog.Logger)) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	log(newLogger(Config{LogFormat: "gcp", GoogleCloudProject: project}, &buf))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	return line
}

// Levels are Cloud Logging's severities, the message is "message", and
// slog's own keys are gone.
func TestGCPSeverity(t *testing.T) {
	for level, want := range map[slog.Level]string{
		slog.LevelDebug - 4: "DEBUG", slog.LevelInfo: "INFO", slog.LevelWarn: "WARNING",
		slog.LevelError: "ERROR", slog.LevelError + 4: "ERROR",
	} {
		line := gcpLine(t, "", func(l *slog.Logger) {
			l.Handler().Handle(context.Background(), slog.NewRecord(time.Now(), level, "hello", 0))
		})
		if line["severity"] != want || line["message"] != "hello" || line["level"] != nil || line["msg"] != nil || line["time"] == nil {
			t.Errorf("level %v: %v; want severity %s, message, time and no level or msg", level, line, want)
		}
	}
}

// A request line's fields become httpRequest, as Cloud Logging names them;
// other fields stay; a line that is not a request keeps its fields.
func TestGCPHTTPRequest(t *testing.T) {
	line := gcpLine(t, "", func(l *slog.Logger) {
		l.Info("request", "method", "PUT", "path", "/records/a", "status", 201, "bytes", 17,
			"duration", 12500*time.Microsecond, "remote", "10.0.0.1:5000", "code", "")
	})
	want := map[string]any{"requestMethod": "PUT", "requestUrl": "/records/a", "status": 201.0,
		"responseSize": "17", "latency": "0.0125s", "remoteIp": "10.0.0.1:5000"}
	if req, _ := line["httpRequest"].(map[string]any); !reflect.DeepEqual(req, want) {
		t.Errorf("httpRequest = %v; want %v", line["httpRequest"], want)
	}
	if line["method"] != nil || line["duration"] != nil || line["code"] != "" {
		t.Errorf("%v: want the request fields moved, the others kept", line)
	}
	for _, ms := range []any{12.5, int64(12)} {
		line = gcpLine(t, "", func(l *slog.Logger) { l.Info("request", "method", "GET", "status", 200, "duration_ms", ms) })
		if req, _ := line["httpRequest"].(map[string]any); req["latency"] != map[any]string{12.5: "0.0125s", int64(12): "0.012s"}[ms] {
			t.Errorf("duration_ms %v: httpRequest %v", ms, req)
		}
	}
	line = gcpLine(t, "", func(l *slog.Logger) { l.Info("stream ended", "status", "done", "bytes", 5) })
	if line["httpRequest"] != nil || line["status"] != "done" || line["bytes"] != 5.0 {
		t.Errorf("a line that is no request: %v; want its fields as they were", line)
	}
}

// A line logged with a request's context carries its trace: from
// traceparent first, else X-Cloud-Trace-Context (its decimal span in hex),
// with the project when there is one; a header that does not parse adds
// nothing.
func TestGCPTrace(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct {
		headers           map[string]string
		project           string
		trace, span       string
		sampled, hasTrace bool
	}{
		{map[string]string{"X-Cloud-Trace-Context": id + "/1;o=1"}, "p1", "projects/p1/traces/" + id, "0000000000000001", true, true},
		{map[string]string{"X-Cloud-Trace-Context": id + "/18446744073709551615"}, "p1", "projects/p1/traces/" + id, "ffffffffffffffff", false, true},
		{map[string]string{"X-Cloud-Trace-Context": strings.ToUpper(id)}, "p1", "projects/p1/traces/" + id, "", false, true},
		{map[string]string{"traceparent": "00-" + id + "-00f067aa0ba902b7-01", "X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/2"},
			"p1", "projects/p1/traces/" + id, "00f067aa0ba902b7", true, true},
		{map[string]string{"X-Cloud-Trace-Context": id + "/1;o=1"}, "", id, "0000000000000001", true, true},
		{map[string]string{"X-Cloud-Trace-Context": "xyz/1"}, "p1", "", "", false, false},
		{map[string]string{"X-Cloud-Trace-Context": "00000000000000000000000000000000/1"}, "p1", "", "", false, false},
		{map[string]string{"traceparent": "00-" + id + "-zz-01"}, "p1", "", "", false, false},
		{nil, "p1", "", "", false, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		var ctx context.Context
		withTrace(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { ctx = r.Context() })).ServeHTTP(httptest.NewRecorder(), r)
		line := gcpLine(t, c.project, func(l *slog.Logger) { l.InfoContext(ctx, "request") })
		traceKey := gcpTraceKey
		if c.project == "" {
			traceKey = "trace_id"
		}
		got, hasSpan := line[gcpSpanKey]
		if !c.hasTrace {
			if line[gcpTraceKey] != nil || line["trace_id"] != nil || hasSpan || line[gcpSampledKey] != nil {
				t.Errorf("%v: %v; want no trace", c.headers, line)
			}
			continue
		}
		if line[traceKey] != c.trace || (c.span != "") != hasSpan || (hasSpan && got != c.span) || line[gcpSampledKey] != c.sampled {
			t.Errorf("%v (project %q): %v; want trace %s, span %q, sampled %v", c.headers, c.project, line, c.trace, c.span, c.sampled)
		}
	}
}
