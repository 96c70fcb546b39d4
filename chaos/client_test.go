package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/r3labs/sse/v2"
)

// secret is the JWT_SECRET of the servers in token mode.
const secret = "chaos-secret-0123456789abcdef-0123"

// token signs an HS256 token for user, valid for an hour.
func token(t testing.TB, user string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// quick serves the requests of the tests: bounded in time, with idle
// connections for many concurrent writers.
var quick = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512},
}

// answer is a response: its status (0 when none came), headers and body.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
}

func (a answer) String() string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return fmt.Sprintf("%d %.300s", a.Status, a.Body)
}

// send makes a request with a JSON body (or none) and optional header
// pairs; it never fails the test, for goroutines.
func send(method, url, body string, headers ...string) answer {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return answer{Err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := quick.Do(req)
	if err != nil {
		return answer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err}
}

// frame is one SSE frame: its own id, its event name and its data.
type frame struct{ ID, Event, Data string }

// stream reads an SSE response frame by frame.
type stream struct {
	resp   *http.Response
	frames chan frame
	cancel context.CancelFunc
}

// dial opens an event stream, with a Last-Event-ID when lastID is set.
func dial(url, lastID string, headers ...string) (*stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: %d %.300s", url, resp.StatusCode, b)
	}
	s := &stream{resp: resp, frames: make(chan frame, 1<<14), cancel: cancel}
	go s.read()
	return s, nil
}

func (s *stream) read() {
	defer close(s.frames)
	events := sse.NewEventStreamReader(s.resp.Body, 4<<20)
	for {
		raw, err := events.ReadEvent()
		if err != nil {
			return
		}
		var f frame
		var data []string
		for _, line := range strings.Split(string(raw), "\n") {
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "id":
				f.ID = value
			case "event":
				f.Event = value
			case "data":
				data = append(data, value)
			}
		}
		f.Data = strings.Join(data, "\n")
		if f.Event != "" || f.Data != "" { // not a heartbeat
			s.frames <- f
		}
	}
}

// next returns the next frame; false at the end of the stream or after d.
func (s *stream) next(d time.Duration) (frame, bool) {
	select {
	case f, ok := <-s.frames:
		return f, ok
	case <-time.After(d):
		return frame{}, false
	}
}

// close ends the connection and drains what its reader still had.
func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
	go func() {
		for range s.frames {
		}
	}()
}

// logEntry is one row of the change log, read with SQL.
type logEntry struct {
	Seq     int64
	Kind    string // set, patch, delete, event
	Name    string
	Version int64
	Data    string
}

// readLog reads the whole change log straight from the database.
func readLog(t testing.TB, url string) []logEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT seq, kind, name, version, coalesce(data::text, '') FROM log ORDER BY seq`)
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[logEntry])
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	return out
}

// execSQL runs statements on the database at url as another program would.
func execSQL(t testing.TB, url string, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func jsonDecode(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}
