package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// logFlushInterval is how long a log line may wait in the buffer.
const logFlushInterval = 100 * time.Millisecond

// lineBuffer batches log lines: under load one write per interval rather
// than one system call per request, which is a measurable share of a
// publish. A line written into an empty buffer arms a timer that writes
// the buffer out logFlushInterval later, so that a server with nothing
// to log never wakes for it. Close writes what is left, and the lines
// after it go out at once.
type lineBuffer struct {
	mu     sync.Mutex
	buf    *bufio.Writer
	timer  *time.Timer // nil until the first line
	armed  bool        // the timer will write the buffer out
	closed bool
}

func newLineBuffer(w io.Writer) *lineBuffer {
	return &lineBuffer{buf: bufio.NewWriterSize(w, 64<<10)}
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	switch {
	case b.closed:
		if ferr := b.buf.Flush(); err == nil {
			err = ferr
		}
	case b.armed || b.buf.Buffered() == 0:
	case b.timer == nil:
		b.timer, b.armed = time.AfterFunc(logFlushInterval, b.flush), true
	default:
		b.timer.Reset(logFlushInterval)
		b.armed = true
	}
	return n, err
}

func (b *lineBuffer) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	b.buf.Flush()
}

// Close writes what is buffered; later lines are written at once.
func (b *lineBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timer != nil {
		b.timer.Stop()
	}
	b.closed, b.armed = true, false
	return b.buf.Flush()
}

// LOG_FORMAT=gcp: Cloud Logging's structured JSON. Cloud Run and GKE read
// one JSON object per line from stdout: "severity" and "message" instead
// of slog's "level" and "msg"; a request's line carries its fields as
// "httpRequest" (shown as a request in the Logs Explorer); a line logged
// with a request's context carries the request's trace, which links it to
// the load balancer's own request log and to Cloud Trace.
// See cloud.google.com/logging/docs/structured-logging.

// Cloud Logging's special keys.
const (
	gcpTraceKey   = "logging.googleapis.com/trace"
	gcpSpanKey    = "logging.googleapis.com/spanId"
	gcpSampledKey = "logging.googleapis.com/trace_sampled"
)

// newGCPHandler writes Cloud Logging's JSON to w. project is the Google
// Cloud project that a trace id belongs to (GOOGLE_CLOUD_PROJECT); without
// it a trace is logged as "trace_id", which Cloud Logging does not link.
func newGCPHandler(w io.Writer, project string) slog.Handler {
	json := slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: gcpReplace})
	return gcpHandler{Handler: json, project: project}
}

// gcpReplace renames slog's top-level keys to Cloud Logging's, and its
// levels to Cloud Logging's severities.
func gcpReplace(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "message"
	case slog.LevelKey:
		a.Key = "severity"
		switch l := a.Value.Any().(slog.Level); {
		case l >= slog.LevelError:
			a.Value = slog.StringValue("ERROR")
		case l >= slog.LevelWarn:
			a.Value = slog.StringValue("WARNING")
		case l >= slog.LevelInfo:
			a.Value = slog.StringValue("INFO")
		default:
			a.Value = slog.StringValue("DEBUG")
		}
	}
	return a
}

// gcpHandler moves a request line's fields into "httpRequest" and adds the
// trace of the request whose context a line is logged with. It is safe for
// concurrent use, as the handler it wraps is.
type gcpHandler struct {
	slog.Handler
	project string
}

// httpRequestKeys maps the request line's attributes (handlers'
// logRequests) to the fields of Cloud Logging's HttpRequest.
var httpRequestKeys = map[string]string{
	"method":     "requestMethod",
	"path":       "requestUrl",
	"status":     "status",
	"bytes":      "responseSize",
	"remote":     "remoteIp",
	"user_agent": "userAgent",
	"proto":      "protocol",
}

// latencyKeys are the names the request line may give its duration: a
// time.Duration, or a number of milliseconds.
var latencyKeys = map[string]bool{"duration": true, "duration_ms": true, "ms": true, "latency_ms": true}

// Handle writes r, its request fields grouped and its trace added.
func (h gcpHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	req := map[string]any{}
	var moved []slog.Attr // the request fields, put back if this is no request line
	r.Attrs(func(a slog.Attr) bool {
		if k, ok := httpRequestKeys[a.Key]; ok {
			req[k] = gcpValue(k, a.Value)
			moved = append(moved, a)
		} else if latencyKeys[a.Key] && latency(a.Value) != "" {
			req["latency"] = latency(a.Value)
			moved = append(moved, a)
		} else {
			out.AddAttrs(a)
		}
		return true
	})
	if req["requestMethod"] != nil && req["status"] != nil {
		out.AddAttrs(slog.Any("httpRequest", req))
	} else {
		out.AddAttrs(moved...)
	}
	if tr, ok := ctx.Value(traceKey{}).(trace); ok {
		if h.project != "" {
			out.AddAttrs(slog.String(gcpTraceKey, "projects/"+h.project+"/traces/"+tr.id))
		} else {
			out.AddAttrs(slog.String("trace_id", tr.id))
		}
		if tr.span != "" {
			out.AddAttrs(slog.String(gcpSpanKey, tr.span))
		}
		out.AddAttrs(slog.Bool(gcpSampledKey, tr.sampled))
	}
	return h.Handler.Handle(ctx, out)
}

// WithAttrs returns a gcpHandler over the wrapped handler's.
func (h gcpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return gcpHandler{Handler: h.Handler.WithAttrs(as), project: h.project}
}

// WithGroup returns a gcpHandler over the wrapped handler's.
func (h gcpHandler) WithGroup(name string) slog.Handler {
	return gcpHandler{Handler: h.Handler.WithGroup(name), project: h.project}
}

// gcpValue is v as HttpRequest's field k wants it: responseSize is an
// int64, which its JSON form writes as a string.
func gcpValue(k string, v slog.Value) any {
	if k == "responseSize" && (v.Kind() == slog.KindInt64 || v.Kind() == slog.KindUint64) {
		return v.String()
	}
	return v.Any()
}

// latency is a duration as HttpRequest's latency wants it ("0.012s"), or
// "" when v is no duration.
func latency(v slog.Value) string {
	var d time.Duration
	switch v.Kind() {
	case slog.KindDuration:
		d = v.Duration()
	case slog.KindFloat64:
		d = time.Duration(v.Float64() * float64(time.Millisecond))
	case slog.KindInt64:
		d = time.Duration(v.Int64()) * time.Millisecond
	default:
		return ""
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// trace is a request's trace as Cloud Run's load balancer sends it.
type trace struct {
	id      string // 32 hex digits
	span    string // 16 hex digits, or ""
	sampled bool
}

type traceKey struct{}

// withTrace puts the trace of each request (its traceparent header, else
// its X-Cloud-Trace-Context) in the request's context, where gcpHandler
// finds it. A header that does not parse is ignored.
func withTrace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tr, ok := parseTrace(r.Header); ok {
			r = r.WithContext(context.WithValue(r.Context(), traceKey{}, tr))
		}
		next.ServeHTTP(w, r)
	})
}

// parseTrace reads W3C's "traceparent: 00-TRACE-SPAN-FLAGS" or Google's
// "X-Cloud-Trace-Context: TRACE/SPAN;o=1" (its span a decimal number).
func parseTrace(h http.Header) (trace, bool) {
	if p := strings.Split(h.Get("traceparent"), "-"); len(p) == 4 && p[0] == "00" &&
		isHex(p[1], 32) && isHex(p[2], 16) && isHex(p[3], 2) {
		flags, _ := strconv.ParseUint(p[3], 16, 8)
		return trace{id: p[1], span: p[2], sampled: flags&1 == 1}, true
	}
	v := h.Get("X-Cloud-Trace-Context")
	v, opts, _ := strings.Cut(v, ";")
	id, span, _ := strings.Cut(v, "/")
	if !isHex(id, 32) {
		return trace{}, false
	}
	tr := trace{id: strings.ToLower(id), sampled: opts == "o=1"}
	if n, err := strconv.ParseUint(span, 10, 64); err == nil && n != 0 {
		tr.span = fmt.Sprintf("%016x", n)
	}
	return tr, true
}

func isHex(s string, n int) bool {
	if len(s) != n || strings.Trim(s, "0") == "" { // all zeros is W3C's invalid id
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
