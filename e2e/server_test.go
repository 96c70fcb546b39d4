package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/server"
)

// specFile is the OpenAPI document, at the repository's root.
const specFile = "../openapi.yaml"

var readSpec = sync.OnceValues(func() ([]byte, error) { return os.ReadFile(specFile) })

// openapiYAML returns the repository's openapi.yaml: the document that the
// command embeds and serves, and that startServer hands to server.Run.
func openapiYAML(t testing.TB) []byte {
	t.Helper()
	b, err := readSpec()
	if err != nil {
		t.Fatalf("read the OpenAPI document: %v", err)
	}
	return b
}

// testServer is a real server started through server.Run on 127.0.0.1:0.
type testServer struct {
	URL     string
	DataDir string
	stop    context.CancelFunc
	done    chan error
	log     lockedBuffer  // everything the server logged
	logged  chan struct{} // closed once the whole log is in log
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Log returns what the server has logged so far.
func (s *testServer) Log() string {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.log.buf.String()
}

// startServer starts a server with the embedded store in a temporary
// directory (or env's DATA_DIR), in open mode unless env says otherwise,
// and stops it when the test ends. Its SHUTDOWN_TIMEOUT is 3s unless env
// says otherwise, so that a stop keeps listening 0.3 s rather than 1 s (a
// tenth of it): the suite stops hundreds of servers.
func startServer(t testing.TB, env map[string]string) *testServer {
	t.Helper()
	vars := map[string]string{
		"HOST":             "127.0.0.1",
		"PORT":             "0",
		"AUTH_MODE":        "open",
		"DATA_DIR":         t.TempDir(),
		"SHUTDOWN_TIMEOUT": "3s",
	}
	for k, v := range env {
		vars[k] = v
	}
	spec := openapiYAML(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &testServer{DataDir: vars["DATA_DIR"], stop: cancel, done: make(chan error, 1), logged: make(chan struct{})}
	go func() {
		err := server.Run(ctx, []string{"switchboard"}, func(k string) string { return vars[k] }, pw, spec)
		pw.CloseWithError(io.EOF)
		s.done <- err
	}()
	select {
	case s.URL = <-listening(io.TeeReader(pr, &s.log), s.logged):
	case err := <-s.done:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start in 10s")
	}
	waitHealthy(t, s.URL)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// listening reads a server's JSON log from r to its end, and sends the
// address of its "listening" line on the channel it returns. It closes
// each of done once it has read the end.
func listening(r io.Reader, done ...chan struct{}) <-chan string {
	addr := make(chan string, 1)
	go func() {
		defer func() {
			for _, c := range done {
				close(c)
			}
		}()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		io.Copy(io.Discard, r)
	}()
	return addr
}

// Stop shuts the server down gracefully and checks that server.Run
// returned nil.
func (s *testServer) Stop(t testing.TB) {
	t.Helper()
	if s.stop == nil {
		return
	}
	s.stop()
	s.stop = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("server.Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("server did not stop in 15s")
		return
	}
	select { // the last lines may still be on their way to s.log
	case <-s.logged:
	case <-time.After(5 * time.Second):
		t.Error("the server's log did not end in 5s")
	}
}

func waitHealthy(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/healthz never answered 200", url)
}

// doClient is do's: a request that has not ended in a minute (a stream
// opened by mistake) fails the test rather than hanging it.
var doClient = &http.Client{Timeout: time.Minute}

// do sends a request with an optional JSON body and returns the status,
// the headers and the body.
func do(t testing.TB, method, url, contentType, body string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := doClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, b
}
