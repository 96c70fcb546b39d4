package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// rewindProxy is a reverse proxy to a server that makes every resumed
// stream start over from the first frame id it ever passed: it rewrites
// Last-Event-ID (and ?lastEventId=) to that id, so that the server replays
// frames the client has already seen. It counts what it passed.
type rewindProxy struct {
	*httptest.Server
	mu       sync.Mutex
	first    string         // the first frame id passed
	ids      map[string]int // how many times each frame id was passed
	rewound  int            // resumes rewritten
	requests int            // GET /stream requests
}

func newRewindProxy(t *testing.T, target string) *rewindProxy {
	p := &rewindProxy{ids: map[string]int{}}
	u, _ := url.Parse(target)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			if r.In.URL.Path != "/stream" {
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			p.requests++
			q := r.Out.URL.Query()
			if p.first == "" || (r.Out.Header.Get("Last-Event-ID") == "" && q.Get("lastEventId") == "") {
				return
			}
			p.rewound++
			if r.Out.Header.Get("Last-Event-ID") != "" {
				r.Out.Header.Set("Last-Event-ID", p.first)
			}
			if q.Get("lastEventId") != "" {
				q.Set("lastEventId", p.first)
				r.Out.URL.RawQuery = q.Encode()
			}
		},
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				return nil
			}
			body := resp.Body
			pr, pw := io.Pipe()
			go func() {
				br := bufio.NewReader(body)
				for {
					line, err := br.ReadBytes('\n')
					if id, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
						p.mu.Lock()
						if p.first == "" {
							p.first = string(bytes.TrimSpace(id))
						}
						p.ids[string(bytes.TrimSpace(id))]++
						p.mu.Unlock()
					}
					if len(line) > 0 {
						if _, werr := pw.Write(line); werr != nil {
							return
						}
					}
					if err != nil {
						pw.CloseWithError(err)
						return
					}
				}
			}()
			resp.Body = readCloser{pr, func() error { pr.Close(); return body.Close() }}
			return nil
		},
	}
	p.Server = httptest.NewServer(rp)
	t.Cleanup(p.CloseClientConnections)
	t.Cleanup(p.Close)
	return p
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// stats reports the resumes rewritten, the stream requests, and how many
// frames were passed more than once.
func (p *rewindProxy) stats() (rewound, requests, repeated int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.ids {
		repeated += n - 1
	}
	return p.rewound, p.requests, repeated
}

// TestClientJSDuplicateFrames: behind a proxy that makes every resumed
// stream start over from the first frame id (so that the server replays
// what the page already saw, again and again, while the page's stream is
// ended every 2 s), the page shows each record version once and in order
// (whole record, path and live collection) and each event once, in the
// order published, though the proxy passed many frames twice.
func TestClientJSDuplicateFrames(t *testing.T) {
	srv := startServer(t, map[string]string{"STREAM_MAX_LIFETIME": "2s", "STREAM_RETRY": "100ms"})
	proxy := newRewindProxy(t, srv.URL)
	put(t, srv.URL, "doc", `{"position":{"x":0}}`)
	put(t, srv.URL, "driver/1", `{"n":0}`)

	page := newBrowser(t, 60*time.Second)
	if err := chromedp.Do(page, chromedp.Navigate(proxy.URL+"/healthz")); err != nil {
		t.Fatal(err)
	}
	pageRun(t, page, `import('/client.js').then(async (m) => {
		window.sb = await m.switchboard(location.origin);
		window.got = {whole: [], x: [], ev: [], col: []};
		sb.record('doc').subscribe((d, m) => got.whole.push(m.version));
		sb.record('doc').subscribe('position.x', (d) => got.x.push(d));
		sb.event.subscribe('chat/*', (d) => got.ev.push(d));
		sb.collection('driver/*').subscribe({
			snapshot: (n, d, m) => got.col.push(n + ' ' + m.version),
			change: (n, d, m) => got.col.push(n + ' ' + m.version),
		});
		return true;
	})`)
	waitPage(t, page, "the snapshots", `got.whole.length === 1 && got.x.length === 1 && got.col.length === 1`, 10*time.Second)

	// Writes for about 7 s: the stream is ended and resumed (rewound) 3 times or more.
	const n = 28
	for i := 1; i <= n; i++ {
		put(t, srv.URL, "doc", fmt.Sprintf(`{"position":{"x":%d}}`, i))
		publishEvent(t, srv.URL, "chat/lobby", fmt.Sprint(i))
		if i%2 == 0 {
			put(t, srv.URL, "driver/1", fmt.Sprintf(`{"n":%d}`, i))
		}
		time.Sleep(250 * time.Millisecond)
	}
	waitPage(t, page, "every change", fmt.Sprintf(`got.whole.length >= %d && got.ev.length >= %d && got.col.length >= %d`, n+1, n, n/2+1), 20*time.Second)
	time.Sleep(2500 * time.Millisecond) // one more rewound resume, room for duplicates
	rewound, requests, repeated := proxy.stats()
	t.Logf("stream requests %d, resumes rewound %d, frames passed again %d", requests, rewound, repeated)
	if rewound < 2 || repeated == 0 {
		t.Fatalf("the proxy rewound %d resumes and passed %d frames again: the test made no duplicate", rewound, repeated)
	}

	var g struct {
		Whole []int64
		X     []int
		Ev    []int
		Col   []string
	}
	if err := json.Unmarshal([]byte(pageRun(t, page, `got`)), &g); err != nil {
		t.Fatal(err)
	}
	var versions, xs, evs []int
	var col []string
	for i := 0; i <= n; i++ {
		versions, xs = append(versions, i+1), append(xs, i)
		if i > 0 {
			evs = append(evs, i)
		}
		if i%2 == 0 {
			col = append(col, fmt.Sprintf("driver/1 %d", i/2+1))
		}
	}
	var whole []int
	for _, v := range g.Whole {
		whole = append(whole, int(v))
	}
	for what, c := range map[string][2]any{
		"doc versions":        {whole, versions},
		"position.x values":   {g.X, xs},
		"events":              {g.Ev, evs},
		"collection versions": {g.Col, col},
	} {
		if !reflect.DeepEqual(c[0], c[1]) {
			t.Errorf("%s %v, want %v", what, c[0], c[1])
		}
	}
}
