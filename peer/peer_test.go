package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

const secret = "s3cret"

// sequencer serves links with apply on a real HTTP server, as the
// handlers mount it, and returns its URL and Server.
func sequencer(t *testing.T, apply Apply) (string, *Server) {
	url, s, _ := sequencerServer(t, apply, false)
	return url, s
}

// sequencerServer is sequencer, over TLS if asked, and returns the
// test server too (its client trusts its certificate).
func sequencerServer(t *testing.T, apply Apply, overTLS bool) (string, *Server, *httptest.Server) {
	t.Helper()
	return serveLinks(t, &Server{Apply: apply}, overTLS)
}

// serveLinks serves s's links on a real HTTP server, as the handlers
// mount it, with the secret and a log set, and returns its URL, s and
// the test server.
func serveLinks(t *testing.T, s *Server, overTLS bool) (string, *Server, *httptest.Server) {
	t.Helper()
	s.Peer, s.Log = func(s string) bool { return s == secret }, slog.New(slog.DiscardHandler)
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != Path {
			http.NotFound(w, r)
			return
		}
		if err := s.Link(w, r); err != nil {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	if overTLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
		hs.Close()
	})
	return hs.URL, s, hs
}

// TestTLS: a link to an https:// sequencer is made over TLS, checked
// against the roots the client is given: without them it is refused,
// and nothing is sent.
func TestTLS(t *testing.T) {
	url, _, hs := sequencerServer(t, func(context.Context, *Request) ([]api.Change, error) {
		return []api.Change{{Name: "tls"}}, nil
	}, true)
	trusting := Client{TLS: hs.Client().Transport.(*http.Transport).TLSClientConfig}
	defer trusting.Close()
	a, err := trusting.Forward(context.Background(), url, secret, NewEvent(api.User{}, "e", []byte(`1`)))
	if err != nil {
		t.Fatal(err)
	}
	if changes, err := a.Result(); err != nil || len(changes) != 1 || changes[0].Name != "tls" {
		t.Errorf("%+v, %v", changes, err)
	}
	var untrusting Client
	defer untrusting.Close()
	if _, err := untrusting.Forward(context.Background(), url, secret, NewEvent(api.User{}, "e", []byte(`1`))); !errors.Is(err, ErrNotSent) {
		t.Errorf("a certificate not trusted: %v, want ErrNotSent", err)
	}
}

// TestForwardRace: many callers forward at once over one link, and each
// gets its own request's answer, computed on the other side from what it
// sent (ops, path, data, conditions, user).
func TestForwardRace(t *testing.T) {
	url, _ := sequencer(t, func(_ context.Context, req *Request) ([]api.Change, error) {
		ops, err := req.RealtimeOps()
		if err != nil {
			return nil, err
		}
		u := req.Caller()
		var out []api.Change
		for _, op := range ops {
			out = append(out, api.Change{Kind: api.KindSet, Name: op.Name + op.Path.String(), Version: op.Cond.IfMatch + 1,
				Data: op.Data, Publisher: u.ID, Seq: int64(u.Claims["n"].(float64))})
		}
		return out, nil
	})
	var c Client
	defer c.Close()
	const callers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			for j := range each {
				n := i*each + j
				user := api.User{ID: fmt.Sprintf("u%d", i), Claims: map[string]any{"n": float64(n)}}
				path, _ := api.ParsePath("/a/" + fmt.Sprint(j))
				ops := []realtime.Op{{Op: "put", Name: fmt.Sprintf("r%d", n), Path: path, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), Cond: api.Cond{IfMatch: int64(n)}}}
				a, err := c.Forward(context.Background(), url, secret, NewRequest(user, ops))
				if err != nil {
					errs <- err
					return
				}
				got, err := a.Result()
				want := api.Change{Kind: api.KindSet, Name: fmt.Sprintf("r%d/a/%d", n, j), Version: int64(n) + 1,
					Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), Publisher: user.ID, Seq: int64(n)}
				if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], want) {
					errs <- fmt.Errorf("request %d: %+v, %v; want %+v", n, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.links) != 1 {
		t.Errorf("%d links, want 1", len(c.links))
	}
}

// TestAnswerCarries: what the sequencer answers reaches the caller as it
// was: changes with Created and times, the user as the token gave it,
// errors with their code, detail, fields and limit; an error without a
// code is INTERNAL, its cause kept on the sequencer.
func TestAnswerCarries(t *testing.T) {
	when := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC)
	user := api.User{ID: "alice", Data: map[string]any{"team": "a", "level": 3.5}, Expires: when, TokenID: "jti1",
		Claims: map[string]any{"sub": "alice", "exp": 1.8e9, "roles": []any{"x", "y"}, "data": map[string]any{"team": "a"}}}
	cases := []struct {
		name  string
		reply func(*Request) ([]api.Change, error)
		check func(t *testing.T, changes []api.Change, err error)
	}{
		{"changes", func(req *Request) ([]api.Change, error) {
			if !reflect.DeepEqual(req.Caller(), user) {
				return nil, fmt.Errorf("user %#v, want %#v", req.Caller(), user)
			}
			return []api.Change{{Seq: 9, Time: when, Kind: api.KindSet, Name: "a", Version: 1, Data: json.RawMessage(`{"x":[1,2.50,"é","\u00e9"],"x":{}}`), Created: true}}, nil
		}, func(t *testing.T, changes []api.Change, err error) {
			want := []api.Change{{Seq: 9, Time: when, Kind: api.KindSet, Name: "a", Version: 1, Data: json.RawMessage(`{"x":[1,2.50,"é","\u00e9"],"x":{}}`), Created: true}}
			if err != nil || !reflect.DeepEqual(changes, want) {
				t.Errorf("%+v, %v; want %+v", changes, err, want)
			}
		}},
		{"error", func(*Request) ([]api.Change, error) {
			return nil, api.Errorf(api.CodeVersionConflict, "record %q is at version %d", "a", 12).With("index", 3).With("currentVersion", int64(12))
		}, func(t *testing.T, _ []api.Change, err error) {
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeVersionConflict || e.Detail != `record "a" is at version 12` {
				t.Fatalf("%v", err)
			}
			if b, _ := json.Marshal(e.Fields); string(b) != `{"currentVersion":12,"index":3}` {
				t.Errorf("fields %s", b)
			}
		}},
		{"limit", func(*Request) ([]api.Change, error) {
			return nil, realtime.LimitRecordBytes.Refuse(api.Errorf(api.CodePayloadTooLarge, "too large"))
		}, func(t *testing.T, _ []api.Change, err error) {
			if l, ok := realtime.LimitOf(err); !ok || l != realtime.LimitRecordBytes || !api.IsCode(err, api.CodePayloadTooLarge) {
				t.Errorf("%v: limit %q %v", err, l, ok)
			}
		}},
		{"internal", func(*Request) ([]api.Change, error) {
			return nil, errors.New("disk on fire")
		}, func(t *testing.T, _ []api.Change, err error) {
			if !api.IsCode(err, api.CodeInternal) || bytes.Contains([]byte(err.Error()), []byte("fire")) {
				t.Errorf("%v, want INTERNAL without its cause", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url, _ := sequencer(t, func(_ context.Context, req *Request) ([]api.Change, error) { return c.reply(req) })
			var cl Client
			defer cl.Close()
			a, err := cl.Forward(context.Background(), url, secret, NewRequest(user, []realtime.Op{{Op: "delete", Name: "a"}}))
			if err != nil {
				t.Fatal(err)
			}
			changes, err := a.Result()
			c.check(t, changes, err)
		})
	}
}

// TestAnswerData: only a single write's answer carries its record's value
// (its HTTP answer has it); a batch's and an event's carry none, so that a
// batch of large writes, applied already, is not refused its answer for
// its size.
func TestAnswerData(t *testing.T) {
	data := json.RawMessage(`{"big":"` + strings.Repeat("x", 1000) + `"}`)
	url, _ := sequencer(t, func(_ context.Context, req *Request) ([]api.Change, error) {
		changes := make([]api.Change, max(len(req.Ops), 1))
		for i := range changes {
			changes[i] = api.Change{Seq: int64(i + 1), Kind: api.KindSet, Name: "a", Version: int64(i + 1), Data: data}
		}
		return changes, nil
	})
	var cl Client
	defer cl.Close()
	op := realtime.Op{Op: "put", Name: "a", Data: data}
	for _, c := range []struct {
		name     string
		req      *Request
		withData bool
	}{
		{"a write", NewRequest(api.User{ID: "u"}, []realtime.Op{op}), true},
		{"a batch", NewRequest(api.User{ID: "u"}, []realtime.Op{op, op, op}), false},
		{"an event", NewEvent(api.User{ID: "u"}, "ev", data), false},
	} {
		a, err := cl.Forward(context.Background(), url, secret, c.req)
		if err != nil {
			t.Fatal(err)
		}
		changes, err := a.Result()
		if err != nil || len(changes) == 0 {
			t.Fatalf("%s: %v, %v", c.name, changes, err)
		}
		for _, ch := range changes {
			if got := ch.Data != nil; got != c.withData || got && !bytes.Equal(ch.Data, data) || ch.Version == 0 {
				t.Errorf("%s: change %+v: data %v, want %v", c.name, ch, got, c.withData)
			}
		}
	}
}

// TestNotSent: a request that cannot have reached the sequencer says so
// (ErrNotSent): nothing listens, the upgrade is refused (a wrong secret,
// something else at the address), or the request holds a string that is
// not UTF-8, which JSON would have changed.
func TestNotSent(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	url, _ := sequencer(t, func(context.Context, *Request) ([]api.Change, error) {
		t.Error("a request was applied")
		return nil, nil
	})
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }))
	defer other.Close()
	for _, c := range []struct{ name, url, secret string }{
		{"nothing listens", closed, secret},
		{"a wrong secret", url, "guessed"},
		{"something else", other.URL, secret},
	} {
		var cl Client
		_, err := cl.Forward(context.Background(), c.url, c.secret, NewEvent(api.User{}, "e", []byte(`1`)))
		if !errors.Is(err, ErrNotSent) || errors.Is(err, ErrNotForwardable) {
			t.Errorf("%s: %v, want ErrNotSent, the sequencer's doing", c.name, err)
		}
		cl.Close()
	}
	var cl Client
	defer cl.Close()
	if _, err := cl.Forward(context.Background(), url, secret, NewRequest(api.User{}, []realtime.Op{{Op: "delete", Name: "a\xff"}})); !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrNotForwardable) {
		t.Errorf("a name that is not UTF-8: %v, want ErrNotSent and ErrNotForwardable", err)
	}
}

// fakeSequencer accepts links and hands each connection, upgraded, to f.
func fakeSequencer(t *testing.T, f func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err != nil {
				c.Close()
				continue
			}
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+Protocol+"\r\n\r\n")
			go f(c, br)
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestLost: a request written whole whose answer does not come (the
// link drops, or the sequencer keeps silent past the timeout) is not
// ErrNotSent: it may have been applied. A later request makes a new link.
func TestLost(t *testing.T) {
	for _, c := range []struct {
		name    string
		timeout time.Duration
		serve   func(net.Conn, *bufio.Reader)
	}{
		{"a link dropped after the request", 0, func(c net.Conn, br *bufio.Reader) {
			readFrame(br, nil)
			c.Close()
		}},
		{"a silent sequencer, past the timeout", 100 * time.Millisecond, func(c net.Conn, br *bufio.Reader) {
			io.Copy(io.Discard, br)
			c.Close()
		}},
	} {
		var links atomic.Int32
		url := fakeSequencer(t, func(conn net.Conn, br *bufio.Reader) {
			links.Add(1)
			c.serve(conn, br)
		})
		cl := Client{Timeout: c.timeout}
		for range 2 {
			_, err := cl.Forward(context.Background(), url, secret, NewEvent(api.User{}, "e", []byte(`1`)))
			if err == nil || errors.Is(err, ErrNotSent) {
				t.Errorf("%s: %v, want an error other than ErrNotSent", c.name, err)
			}
		}
		// The fake counts a link on a goroutine of its own, which may run
		// after the client gave up on it.
		waitFor(t, "a link for each request", func() bool { return links.Load() >= 2 })
		if n := links.Load(); n != 2 {
			t.Errorf("%s: %d links for 2 requests, want 2", c.name, n)
		}
		cl.Close()
	}
}

// waitFor fails t unless cond holds within 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// TestCloseAnswersFirst: Server.Close lets the requests being applied
// answer before it closes the links, and answers the requests that
// arrive meanwhile as not taken (ErrNotSent: nothing was applied).
func TestCloseAnswersFirst(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var applied atomic.Int32
	url, s := sequencer(t, func(context.Context, *Request) ([]api.Change, error) {
		if applied.Add(1) == 1 {
			close(started)
			<-release
		}
		return []api.Change{{Name: "e"}}, nil
	})
	var cl Client
	defer cl.Close()
	forward := func() error {
		a, err := cl.Forward(context.Background(), url, secret, NewEvent(api.User{}, "e", []byte(`1`)))
		if err == nil {
			_, err = a.Result()
		}
		return err
	}
	done := make(chan error, 1)
	go func() { done <- forward() }()
	<-started
	closed := make(chan struct{})
	go func() {
		s.Close(context.Background())
		close(closed)
	}()
	for !s.closing() {
		time.Sleep(time.Millisecond)
	}
	if err := forward(); !errors.Is(err, ErrNotSent) {
		t.Errorf("a request while closing: %v, want ErrNotSent", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a request was being applied")
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the request under way at Close: %v", err)
	}
	<-closed
	waitFor(t, "the client sees its link end", func() bool {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return len(cl.links) == 0
	})
	if err := forward(); !errors.Is(err, ErrNotSent) {
		t.Errorf("a request after Close: %v, want ErrNotSent", err)
	}
	if n := applied.Load(); n != 1 {
		t.Errorf("%d requests applied, want 1", n)
	}
}

// TestFrames: frames round-trip, and a frame too large or cut short is
// an error, not a panic or an allocation of its declared size.
func TestFrames(t *testing.T) {
	want := &Answer{ID: 7, Changes: []Change{{Name: "a", Data: []byte(`{}`), Created: true}, {Name: "b", Data: []byte(`null`)}, {Name: "c"},
		{Name: "d", Data: []byte(`{"a":1,"a":"\u00e9<\/x>"}`)}}}
	b, err := appendFrame(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := readFrame(bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeAnswer(msg)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("%+v, %v; want %+v", got, err, want)
	}
	for i := range len(b) - 1 {
		if _, err := readFrame(bytes.NewReader(b[:i+1]), nil); err == nil {
			t.Errorf("a frame cut to %d bytes was read", i+1)
		}
	}
	huge := binary.BigEndian.AppendUint32(nil, MaxFrame+1)
	if _, err := readFrame(bytes.NewReader(huge), nil); err == nil {
		t.Error("a frame above MaxFrame was read")
	}
}

// FuzzLink: whatever a peer sends on a link, the sequencer neither
// panics nor applies a request that is not one; and whatever comes back
// on a link, the instance neither panics nor takes it for an answer to
// a request it did not make.
func FuzzLink(f *testing.F) {
	req, _ := appendFrame(nil, NewRequest(api.User{ID: "a"}, []realtime.Op{{Op: "put", Name: "x", Data: json.RawMessage(`1`)}}))
	ans, _ := appendFrame(nil, &Answer{ID: 1, Error: &Error{Code: api.CodeNotFound, Fields: map[string]jsontext.Value{"index": jsontext.Value("1")}}})
	f.Add(req)
	f.Add(ans)
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0, 0, 0, 4, 'n', 'u', 'l', 'l'})
	f.Add([]byte{0, 0, 0, 6, 'p', '2', '0', '0', '0', '0'})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for {
			msg, err := readFrame(br, nil)
			if err != nil {
				break
			}
			if r, err := decodeRequest(msg); err == nil {
				r.Caller()
				r.RealtimeOps()
			}
			if a, err := decodeAnswer(msg); err == nil {
				a.Result()
			}
			if d, ok := paceOf(msg); ok {
				if d < 0 || d > maxPace {
					t.Fatalf("paceOf(%q) = %v, beyond [0, %v]", msg, d, maxPace)
				}
				if back, ok := paceOf([]byte(paceText(d))); !ok || back != d {
					t.Fatalf("paceOf(paceText(%v)) = %v, %v", d, back, ok)
				}
			}
		}
	})
}

// TestRetire: a link to a new sequencer retires the one to the old
// sequencer, which closes (on both ends) without failing the request
// that was waiting on it.
func TestRetire(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	oldURL, oldSeq := sequencer(t, func(context.Context, *Request) ([]api.Change, error) {
		close(started)
		<-release
		return []api.Change{{Name: "old"}}, nil
	})
	newURL, _ := sequencer(t, func(context.Context, *Request) ([]api.Change, error) {
		return []api.Change{{Name: "new"}}, nil
	})
	var cl Client
	defer cl.Close()
	done := make(chan error, 1)
	go func() {
		_, err := cl.Forward(context.Background(), oldURL, secret, NewEvent(api.User{}, "e", []byte(`1`)))
		done <- err
	}()
	<-started
	if _, err := cl.Forward(context.Background(), newURL, secret, NewEvent(api.User{}, "e", []byte(`1`))); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the request on the retired link: %v", err)
	}
	waitFor(t, "one link on the client, none on the old sequencer", func() bool {
		cl.mu.Lock()
		client := len(cl.links)
		cl.mu.Unlock()
		oldSeq.mu.Lock()
		defer oldSeq.mu.Unlock()
		return client == 1 && len(oldSeq.links) == 0
	})
}

// wrapped is a connection wrapper that says what it wraps, as the
// server's listener's does.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// TestCloseWriter: hangUp finds the TCP connection under wrappers.
func TestCloseWriter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cw, ok := closeWriter(wrapped{wrapped{c}}); !ok || cw != c.(*net.TCPConn) {
		t.Errorf("closeWriter found %v, %v; want the TCP connection", cw, ok)
	}
	if _, ok := closeWriter(struct{ net.Conn }{c}); ok {
		t.Error("closeWriter saw through a wrapper that does not say what it wraps")
	}
}
