package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// pgClient serves the requests of goroutines, which must not stop the
// test themselves: bounded time, idle connections for many writers.
var pgClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256},
}

// tryDo sends a request with headers (name, value, ...) and returns the
// status and body, or the error.
func tryDo(method, url, contentType, body string, headers ...string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := pgClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// openTracker makes a tracker's first connection, which reads its ready
// and snapshot frames.
func openTracker(t testing.TB, k *testkit.Tracker, base string) *sseClient {
	t.Helper()
	c, err := k.Connect(base)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// churn reads for a random while, then resumes on a random one of bases,
// again and again, until the stream has reached its target.
func churn(k *testkit.Tracker, c *sseClient, bases []string, abort <-chan struct{}) {
	for {
		deadline := time.Now().Add(time.Duration(rand.IntN(300)) * time.Millisecond)
		for wait := time.Until(deadline); wait > 0; wait = time.Until(deadline) {
			f, ok := c.TryNext(wait)
			if !ok {
				break
			}
			if k.See(f) != nil {
				c.Close()
				return
			}
		}
		c.Close()
		select {
		case <-abort:
			return
		default:
		}
		if k.Done() {
			return
		}
		var err error
		if c, err = k.Connect(bases[rand.IntN(len(bases))]); err != nil {
			k.Fail(err)
			return
		}
	}
}

// follow reads the stream until it reaches its target. When cut is
// closed, it drops the connection and resumes on the other instance;
// a connection lost otherwise resumes on the same one. Resuming retries
// for as long as the database is away.
func follow(k *testkit.Tracker, c *sseClient, bases []string, cut <-chan struct{}, abort <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	cur := 0
	for {
		select {
		case f, ok := <-c.Frames():
			if ok {
				if k.See(f) != nil {
					c.Close()
					return
				}
				continue
			}
		case <-cut:
			cut, cur = nil, 1-cur
		case <-tick.C:
			if k.Done() {
				c.Close()
				return
			}
			continue
		case <-abort:
			c.Close()
			return
		}
		c.Close()
		for c = nil; c == nil; {
			var err error
			if c, err = k.Connect(bases[cur]); err == nil {
				break
			}
			if k.Err() != nil {
				return
			}
			select {
			case <-abort:
				k.Fail(fmt.Errorf("no resume after the outage: %w", err))
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}
