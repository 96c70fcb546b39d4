package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-dev/switchboard/internal/testkit"
	"github.com/switchboard-dev/switchboard/server"
)

// FuzzEventFrame publishes arbitrary bytes as an event's payload to a
// real server (in this process, on the embedded store) and reads its
// stream: a payload that is JSON is accepted and arrives as one frame
// whose data is one line of JSON carrying the payload, unchanged in
// meaning; anything else gets 400 INVALID_JSON (or 413 when too large),
// and no frame. This is the SSE framing of arbitrary JSON, end to end.
func FuzzEventFrame(f *testing.F) {
	for _, s := range []string{`1`, `"a\nb"`, `"\r\n\r\n"`, "\"\u2028\u2029\"", `{"a":[1,2,{"b":null}]}`, `"\ud800"`,
		`1e400`, `-0`, `"data: x\n\nevent: y"`, `{"":""}`, "\"\x00\"", `[` + strings.Repeat(`[`, 50) + strings.Repeat(`]`, 51), "nope", ""} {
		f.Add([]byte(s))
	}
	base := inProcess(f)
	s, err := testkit.Dial(base+"/stream?event=fz", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	if fr, ok := s.TryNext(5 * time.Second); !ok || fr.Event != "ready" {
		f.Fatalf("first frame %+v", fr)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		a := send(http.MethodPost, base+"/events/fz", string(payload))
		if a.Err != nil {
			t.Fatal(a.Err)
		}
		if a.Status != http.StatusAccepted {
			var p struct{ Code string }
			json.Unmarshal(a.Body, &p)
			if !(a.Status == http.StatusBadRequest && p.Code == "INVALID_JSON" || a.Status == http.StatusRequestEntityTooLarge) {
				t.Fatalf("POST %q: %v", payload, a)
			}
			if a.Status == http.StatusBadRequest && json.Valid(payload) && utf8.Valid(payload) && !bytes.Contains(payload, []byte(`\u`)) && bytes.Count(payload, []byte("[")) < 1000 && bytes.Count(payload, []byte("{")) < 1000 {
				t.Fatalf("valid JSON %q refused: %v", payload, a)
			}
			return
		}
		if !json.Valid(payload) || !utf8.Valid(payload) {
			t.Fatalf("POST %q, not JSON: %v", payload, a)
		}
		fr, ok := s.TryNext(5 * time.Second)
		if !ok || fr.Event != "event" {
			t.Fatalf("after POST %q: frame %+v", payload, fr)
		}
		if strings.ContainsAny(fr.Data, "\r\n") {
			t.Fatalf("data of more than one line: %q", fr.Data)
		}
		var d struct{ Data json.RawMessage }
		if err := json.Unmarshal([]byte(fr.Data), &d); err != nil {
			t.Fatalf("frame data %q: %v", fr.Data, err)
		}
		var want, got bytes.Buffer
		json.Compact(&want, payload)
		json.Compact(&got, d.Data)
		if !bytes.Equal(want.Bytes(), got.Bytes()) && !sameJSON(payload, d.Data) {
			t.Fatalf("published %q, the frame carries %q", payload, d.Data)
		}
	})
}

// sameJSON compares two JSON texts by meaning, numbers by their text.
func sameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	x, okx := decode(a)
	y, oky := decode(b)
	if !okx || !oky {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// inProcess starts a server through server.Run in this process, on the
// embedded store in a temporary directory, and returns its URL.
func inProcess(f *testing.F) string {
	f.Helper()
	spec, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		f.Fatal(err)
	}
	vars := map[string]string{"HOST": "127.0.0.1", "PORT": "0", "AUTH_MODE": "open", "DATA_DIR": f.TempDir(), "LOG_FORMAT": "json"}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := server.Run(ctx, []string{"switchboard"}, func(k string) string { return vars[k] }, pw, spec)
		pw.Close()
		done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		d := json.NewDecoder(pr)
		for {
			var line struct{ Msg, Addr string }
			if d.Decode(&line) != nil {
				io.Copy(io.Discard, pr)
				return
			}
			if line.Msg == "listening" {
				addr <- line.Addr
			}
		}
	}()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Errorf("server.Run: %v", err)
		}
	})
	select {
	case a := <-addr:
		return a
	case err := <-done:
		f.Fatalf("server.Run: %v", err)
	case <-time.After(patience):
		f.Fatal("the server did not start")
	}
	return ""
}
