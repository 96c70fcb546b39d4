package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks run whole servers (through server.Run) on PostgreSQL,
// with the load generator (HTTP writers, SSE readers) in the same process:
//
//	go test -run '^$' -bench PGFanout -benchtime 30000x -count 3 ./e2e/
//	go test -run '^$' -bench PGLatency -benchtime 5000x -count 3 ./e2e/
//
// pgtest's server runs with fsync off; to measure durable commits, point
// TEST_DATABASE_URL at a server with fsync and synchronous_commit on (a
// default initdb). On the 2-core test machine, durable: about 5,500-6,000
// writes/s with 100 subscribers on one instance (550,000-600,000 frames/s),
// 5,400-6,200 across two, 8,000 with one subscriber; publish-to-deliver
// across instances at 1,000 events/s p50 3-3.7 ms, p99 9-11 ms. The
// process (servers and load generator) then uses both cores; Postgres
// commits about 100 groups a second, some 60 writes per fsync.

// sseCounter reads a stream and counts its frames of one event type,
// without keeping them.
type sseCounter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
	stop context.CancelFunc
}

// countSSE opens url and counts its frames named event once the first
// skip frames (ready, snapshots) have passed; done closes at want.
func countSSE(b *testing.B, url, event string, skip int, want int64) *sseCounter {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		b.Fatalf("open %s: %v %v", url, err, resp)
	}
	c := &sseCounter{want: want, done: make(chan struct{}), stop: cancel}
	b.Cleanup(func() { cancel(); resp.Body.Close() })
	prefix := []byte("event: " + event)
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		frames := 0
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.HasPrefix(line, []byte("event: ")) {
				continue
			}
			if frames++; frames == skip {
				close(started)
			}
			if frames > skip && bytes.Equal(line, prefix) && c.n.Add(1) == c.want {
				close(c.done)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		b.Fatalf("%s: no ready and snapshot frames", url)
	}
	return c
}

// BenchmarkPGFanout measures record writes per second, each delivered to
// 100 SSE subscribers, from the first write until every subscriber has
// every frame. 256 concurrent HTTP writers write 16 records; every stream
// subscribes to all 16.
//
//   - one: writes and streams on one instance;
//   - cross: writes on A, streams on B (every delivery crosses instances);
//   - spread: writes and streams split evenly over A and B;
//   - one-1sub: one instance, one subscriber (the cost of the writes alone).
func BenchmarkPGFanout(b *testing.B) {
	first := func(int) int { return 0 }
	for _, tc := range []struct {
		name        string
		instances   int
		subscribers int
		writeTo     func(i int) int // instance of a write
		streamOn    func(i int) int // instance of a stream
	}{
		{"one", 1, 100, first, first},
		{"cross", 2, 100, first, func(int) int { return 1 }},
		{"spread", 2, 100, func(i int) int { return i % 2 }, func(i int) int { return i % 2 }},
		{"one-1sub", 1, 1, first, first}, // the baseline: writes over HTTP, next to no fan-out
	} {
		b.Run(tc.name, func(b *testing.B) {
			_, srv := pgServers(b, tc.instances, nil)
			const records, callers = 16, 256
			subscribers := tc.subscribers
			var q []string
			for r := range records {
				q = append(q, "record=bench/"+strconv.Itoa(r))
			}
			counters := make([]*sseCounter, subscribers)
			for i := range counters {
				url := srv[tc.streamOn(i)].URL + "/stream?" + strings.Join(q, "&")
				counters[i] = countSSE(b, url, "record", 1+records, int64(b.N))
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range callers {
				wg.Go(func() {
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						url := srv[tc.writeTo(int(n))].URL + "/records/bench/" + strconv.Itoa(int(n)%records)
						st, body, err := tryDo(http.MethodPut, url, "application/json", `{"n":`+strconv.FormatInt(n, 10)+`}`)
						if err != nil || st/100 != 2 {
							b.Errorf("PUT: %d %s %v", st, body, err)
							return
						}
					}
				})
			}
			wg.Wait()
			written := b.Elapsed()
			for i, c := range counters {
				select {
				case <-c.done:
				case <-time.After(30 * time.Second):
					b.Fatalf("subscriber %d got %d of %d frames", i, c.n.Load(), b.N)
				}
			}
			b.StopTimer()
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/s, "writes/s")
			b.ReportMetric(float64(b.N*subscribers)/s, "frames/s")
			b.ReportMetric(float64(b.N)/written.Seconds(), "acked-writes/s")
		})
	}
}

// BenchmarkPGLatency measures the time from sending POST /events on A to
// reading the event's frame from a stream on B, at 1,000 events/s (b.N
// events, so -benchtime 5000x runs 5 s), and reports its percentiles:
// with NOTIFY_INTERVAL's default, and with the interval at which an idle
// instance costs under 20 µs per commit at that rate (README).
func BenchmarkPGLatency(b *testing.B) {
	for _, interval := range []string{"0s", "3ms"} {
		b.Run("NOTIFY_INTERVAL="+interval, func(b *testing.B) { pgLatency(b, interval) })
	}
}

func pgLatency(b *testing.B, interval string) {
	const rate = 1000 // events per second
	_, srv := pgServers(b, 2, map[string]string{"NOTIFY_INTERVAL": interval})
	a, bURL := srv[0].URL, srv[1].URL

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bURL+"/stream?event=lat/*", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("open stream: %v", err)
	}
	defer resp.Body.Close()
	lat := make([]time.Duration, 0, b.N)
	var received atomic.Int64
	done, ready := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(resp.Body)
		event := false // the frame being read is an event
		for sc.Scan() {
			line := sc.Bytes()
			if name, ok := bytes.CutPrefix(line, []byte("event: ")); ok {
				event = string(name) == "event"
				if string(name) == "ready" {
					close(ready)
				}
			}
			d, ok := bytes.CutPrefix(line, []byte("data: "))
			if !ok || !event {
				continue
			}
			now := time.Now()
			var f struct{ Data struct{ T int64 } }
			if json.Unmarshal(d, &f) != nil {
				continue
			}
			lat = append(lat, now.Sub(time.Unix(0, f.Data.T)))
			if received.Add(1) == int64(b.N) {
				close(done)
			}
		}
	}()
	<-ready

	// A pacer hands out send times; 64 publishers send when they are due,
	// so a slow request does not hold the next ones back.
	due := make(chan time.Time, 64)
	var late atomic.Int64
	var ackMu sync.Mutex
	acks := make([]time.Duration, 0, b.N) // POST to 202
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for at := range due {
				time.Sleep(time.Until(at))
				if time.Since(at) > time.Millisecond {
					late.Add(1)
				}
				sent := time.Now()
				body := fmt.Sprintf(`{"t":%d}`, sent.UnixNano())
				if st, out, err := tryDo(http.MethodPost, a+"/events/lat/x", "application/json", body); err != nil || st != http.StatusAccepted {
					b.Errorf("publish: %d %s %v", st, out, err)
				}
				ackMu.Lock()
				acks = append(acks, time.Since(sent))
				ackMu.Unlock()
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		due <- start.Add(time.Duration(i) * time.Second / rate)
	}
	close(due)
	wg.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("received %d of %d events", received.Load(), b.N)
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 { return float64(d[int(p*float64(len(d)-1))]) / 1e6 }
	slices.Sort(lat)
	slices.Sort(acks)
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(lat, 1), "max-ms")
	b.ReportMetric(pct(acks, 0.50), "ack-p50-ms")
	b.ReportMetric(pct(acks, 0.99), "ack-p99-ms")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(late.Load())/float64(b.N)*100, "late-sends-%")
}
