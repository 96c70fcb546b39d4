package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkCollectionSnapshot measures the snapshot of a collection of
// 10,000 records of 1 KiB each to one stream, through a real server and
// socket: the time from sending GET /stream?record=snap/* until the
// synced frame is read, and the growth of the process's peak resident set
// (VmHWM, reset before each stream) over its resident set before, and of
// its anonymous part alone (sampled: the embedded store's file is mapped,
// and the pages of it that a snapshot reads count as resident). The
// server and the client share the process, so the growth is an upper
// bound of the server's; the client keeps no frame.
//
//	go test -run '^$' -bench CollectionSnapshot -benchtime 5x -count 3 ./e2e/
func BenchmarkCollectionSnapshot(b *testing.B) {
	const records = 10000
	value := `{"pad":"` + strings.Repeat("x", 1024-10) + `"}` // 1 KiB of compact JSON
	for _, backend := range []string{"embedded", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var base string
			if backend == "postgres" {
				_, srv := pgServers(b, 1, nil)
				base = srv[0].URL
			} else {
				base = startServer(b, nil).URL
			}
			names := make([]string, records)
			for i := range names {
				names[i] = collName("snap/", i)
			}
			putBatch(b, base, names, func(string) string { return value })
			var took time.Duration
			var peak, peakAnon int64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				runtime.GC()
				debug.FreeOSMemory()
				before := resetPeakRSS(b)
				anonBefore := statusKiB(b, "RssAnon")
				sampled := make(chan int64)
				stop := make(chan struct{})
				go func() { sampled <- sampleAnon(b, stop) }()
				b.StartTimer()
				start := time.Now()
				n := readToSynced(b, base+"/stream?record=snap/*")
				took += time.Since(start)
				b.StopTimer()
				close(stop)
				if n != records {
					b.Fatalf("%d snapshots, want %d", n, records)
				}
				peak = max(peak, statusKiB(b, "VmHWM")-before)
				peakAnon = max(peakAnon, <-sampled-anonBefore)
				b.StartTimer()
			}
			b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "ms/synced")
			b.ReportMetric(float64(peak)/1024, "peak-RSS-growth-MiB")
			b.ReportMetric(float64(peakAnon)/1024, "peak-anon-growth-MiB")
		})
	}
}

// sampleAnon returns the largest anonymous resident set (RssAnon: the
// heap and stacks, not the store's mapped file) seen every 2 ms until stop
// closes.
func sampleAnon(b *testing.B, stop <-chan struct{}) int64 {
	var peak int64
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		peak = max(peak, statusKiB(b, "RssAnon"))
		select {
		case <-stop:
			return peak
		case <-tick.C:
		}
	}
}

// readToSynced opens a stream and counts its snapshot frames until its
// synced frame, keeping none.
func readToSynced(b *testing.B, url string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("open %s: %v %v", url, err, resp)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		switch line := sc.Bytes(); {
		case bytes.Equal(line, []byte("event: snapshot")):
			n++
		case bytes.Equal(line, []byte("event: synced")):
			return n
		}
	}
	b.Fatalf("the stream ended after %d snapshots: %v", n, sc.Err())
	return 0
}

// resetPeakRSS resets the process's peak resident set (Linux: clear_refs
// 5) and returns its resident set now, in KiB.
func resetPeakRSS(b *testing.B) int64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
	return statusKiB(b, "VmRSS")
}

// statusKiB reads a "kB" field of /proc/self/status.
func statusKiB(b *testing.B, field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("%s: %q", field, line)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
