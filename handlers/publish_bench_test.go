package handlers_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/handlers"
)

// BenchmarkPublishHTTP: a publish through the server's routes (every
// middleware, the handler, the embedded store's group commit and fsync),
// from parallel publishers to many topics, as the many-topics benchmark
// sends them. Its allocs/op are the request's, the network's aside.
func BenchmarkPublishHTTP(b *testing.B) {
	_, d := newServer(b, options{deps: func(d *handlers.Deps) {
		d.Log = slog.New(slog.NewJSONHandler(io.Discard, nil)) // the default log
	}})
	h := handlers.Routes(d)
	var topic atomic.Int64
	b.ReportAllocs()
	cpu := processCPU(b)
	b.SetParallelism(4) // 4 publishers a core: groups as under load
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := http.NewRequest(http.MethodPost, "http://sb/events/t"+strconv.FormatInt(topic.Add(1)%1000, 10), strings.NewReader(`"1733497475123456789"`))
			if err != nil {
				b.Fatal(err)
			}
			r.RemoteAddr = "192.0.2.1:1234"
			r.Header.Set("Content-Type", "application/json")
			w := deadlineRecorder{httptest.NewRecorder()}
			h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Fatalf("publish: %d %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time the process has used (user and system), in
// nanoseconds: a publish's CPU cost, which its wait for the disk is not.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// deadlineRecorder takes read deadlines as a connection does (Bodies sets
// them), where a bare recorder's refusal would allocate an error.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetReadDeadline(time.Time) error { return nil }
