package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "TestDemo writes its screenshot of the demo page to docs/demo.png")

// demoScreenshot is the screenshot of the demo page that the README opens with.
const demoScreenshot = "../docs/demo.png"

// demoEnv is a server with the demo on; a short LEAVE_GRACE lets the
// drivers stop soon after their last watcher leaves.
var demoEnv = map[string]string{"DEMO": "true", "LEAVE_GRACE": "200ms"}

// driverVersions returns the version of every record under driver/, by name.
func driverVersions(t *testing.T, base string, headers ...string) map[string]int64 {
	t.Helper()
	st, _, b := do(t, http.MethodGet, base+"/records?prefix=driver/", "", "", headers...)
	var list struct {
		Records []struct {
			Name    string
			Version int64
		}
	}
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil {
		t.Fatalf("GET /records?prefix=driver/: %d %s", st, b)
	}
	v := map[string]int64{}
	for _, r := range list.Records {
		v[r.Name] = r.Version
	}
	return v
}

// placedDrivers waits until the provider, which starts beside the server,
// has placed all six drivers, and returns their versions.
func placedDrivers(t *testing.T, base string, headers ...string) map[string]int64 {
	t.Helper()
	v := driverVersions(t, base, headers...)
	for deadline := time.Now().Add(10 * time.Second); len(v) < 6 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		v = driverVersions(t, base, headers...)
	}
	if len(v) != 6 {
		t.Fatalf("driver records 10s after start: %v, want driver/1 to driver/6", v)
	}
	return v
}

// waitDriversStill waits until no driver record's version changes for a
// while: nobody watches, so the provider must stop writing.
func waitDriversStill(t *testing.T, base string, headers ...string) map[string]int64 {
	t.Helper()
	const still = 1500 * time.Millisecond
	deadline := time.Now().Add(20 * time.Second)
	last := driverVersions(t, base, headers...)
	since := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		now := driverVersions(t, base, headers...)
		if !sameVersions(now, last) {
			last, since = now, time.Now()
			continue
		}
		if time.Since(since) >= still {
			return now
		}
	}
	t.Fatalf("the drivers are still being moved 20s on with nobody watching: versions %v", last)
	return nil
}

func sameVersions(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// openDemo opens /demo in ctx at the size of the README's screenshot and
// waits for the six drivers.
func openDemo(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1000, 650), chromedp.Navigate(base+"/demo")); err != nil {
		t.Fatalf("open %s/demo: %v", base, err)
	}
	waitDemo(t, ctx, "the six drivers", `window.demo && Object.keys(demo.drivers).length === 6`)
}

// waitDemo polls predicate in a demo page until it is true.
func waitDemo(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.demo) + ' status: ' + document.getElementById('status').textContent`))
		t.Fatalf("wait for %s: %v\npage: %s", what, err, dump)
	}
}

// TestDemo opens /demo in two pages of a real browser: the drivers sit
// still until someone watches, move while the pages are open, and stop
// being written once both are closed; a chat message of page A reaches
// page B, which sees A in presence; add-two answers 5 for 2+3. It takes
// the README's screenshot (written to docs/demo.png with
// -update-screenshot) and logs the time to the first driver shown.
func TestDemo(t *testing.T) {
	srv := startServer(t, demoEnv)
	before := placedDrivers(t, srv.URL)
	time.Sleep(time.Second)
	for name, v := range driverVersions(t, srv.URL) {
		if v != 1 {
			t.Errorf("%s is at version %d with nobody watching, want 1 (placed once)", name, v)
		}
	}

	a := newBrowser(t, 90*time.Second)
	openDemo(t, a, srv.URL)
	b, closeB := chromedp.NewContext(a)
	defer closeB()
	openDemo(t, b, srv.URL)
	for name, ctx := range map[string]context.Context{"A": a, "B": b} {
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`[demo.firstDriverMs, demo.scriptMs]`))
		if err != nil || len(ms) != 2 {
			t.Fatal(ms, err)
		}
		t.Logf("page %s: first driver shown %.1f ms after the page opened (its script began at %.1f ms)", name, ms[0], ms[1])
	}

	// The pages watch: every driver moves, as both pages see.
	start, err := chromedp.Run(b, chromedp.Evaluate[map[string]struct{ X, Y float64 }](`demo.drivers`))
	if err != nil {
		t.Fatal(err)
	}
	startJSON, _ := json.Marshal(start)
	moved := `(() => { const s = ` + string(startJSON) + `; return Object.entries(demo.drivers).filter(([n, d]) => s[n] && (d.x !== s[n].X || d.y !== s[n].Y)).length === 6; })()`
	waitDemo(t, a, "every driver to move on page A", moved)
	waitDemo(t, b, "every driver to move on page B", moved)

	// Chat and presence.
	if err := chromedp.Do(a, chromedp.SetValue(`#name`, "Ada"), chromedp.Click(`#join button`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.SetValue(`#name`, "Bruno"), chromedp.Click(`#join button`)); err != nil {
		t.Fatal(err)
	}
	waitDemo(t, a, "page A logged in", `demo.me && demo.me.id === 'guest-ada'`)
	waitDemo(t, b, "page B to see Ada in presence", `demo.people.includes('guest-ada')`)
	waitDemo(t, a, "page A to see Bruno in presence", `demo.people.includes('guest-bruno')`)
	if err := chromedp.Do(a, chromedp.SetValue(`#text`, "Ciao! Two margheritas to the station, please."), chromedp.Click(`#say button`)); err != nil {
		t.Fatal(err)
	}
	hasMsg := `demo.messages.some((m) => m.name === 'Ada' && m.text.startsWith('Ciao!')) && document.getElementById('messages').textContent.includes('Two margheritas')`
	waitDemo(t, b, "page A's message on page B", hasMsg)
	waitDemo(t, a, "page A's message on page A", hasMsg)
	if err := chromedp.Do(b, chromedp.SetValue(`#text`, "On my way!"), chromedp.Click(`#say button`)); err != nil {
		t.Fatal(err)
	}
	waitDemo(t, a, "page B's message on page A", `demo.messages.some((m) => m.name === 'Bruno')`)

	// Add two, with the page's form: 2 + 3.
	if err := chromedp.Do(b, chromedp.Click(`#add button`)); err != nil {
		t.Fatal(err)
	}
	waitDemo(t, b, "add-two to answer 5", `demo.sum === 5 && document.getElementById('sum').textContent === '5'`)
	if got := pageRun(t, a, `sb.rpc.make('demo/add-two', {a: 40, b: 2})`); got != "42" {
		t.Errorf("demo/add-two of 40 and 2 = %s, want 42", got)
	}
	if got := pageRun(t, a, `sb.rpc.make('demo/add-two', {a: 'x'}).then(() => 'resolved', (e) => e.code)`); got != `"RPC_ERROR"` {
		t.Errorf("demo/add-two of {a: 'x'}: %s, want RPC_ERROR", got)
	}

	if err := chromedp.Do(a, chromedp.Click(`#add button`)); err != nil {
		t.Fatal(err)
	}
	waitDemo(t, a, "add-two to answer 5 on page A", `document.getElementById('sum').textContent === '5'`)
	shot := screenshotDemo(t, a)
	checkScreenshot(t, shot)
	if *updateScreenshot {
		if err := os.MkdirAll(filepath.Dir(demoScreenshot), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(demoScreenshot, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", demoScreenshot, len(shot))
	}

	// Both pages close: the demand ends, and the drivers stop being written.
	watched := driverVersions(t, srv.URL)
	closeB()
	if err := chromedp.Cancel(a); err != nil {
		t.Fatalf("close page A: %v", err)
	}
	still := waitDriversStill(t, srv.URL)
	for name, v := range still {
		if v <= before[name]+2 {
			t.Errorf("%s: version %d after being watched (%d at start), want it moved", name, v, before[name])
		}
	}
	t.Logf("driver versions: %v at start, %v while watched, %v after the pages closed", before, watched, still)
	srv.Stop(t)
	noDemoGoroutines(t)
}

// noDemoGoroutines checks that no goroutine of the demo's provider
// outlived the server (server.Run has returned).
func noDemoGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "switchboard/demo.") {
			t.Errorf("a goroutine of the demo outlived the server:\n%s", g)
		}
	}
}

// screenshotDemo waits for the drivers to be under way and captures the
// page's viewport.
func screenshotDemo(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	time.Sleep(400 * time.Millisecond) // mid-move: the drivers between crossings
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return shot
}

// checkScreenshot checks that shot is a PNG of the demo page's size and
// small enough to keep in the repository.
func checkScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	if cfg.Width < 800 || cfg.Width > 1400 || cfg.Height < 500 || cfg.Height > 1000 {
		t.Errorf("the screenshot is %dx%d, want about 1000x650", cfg.Width, cfg.Height)
	}
	if len(shot) > 300<<10 {
		t.Errorf("the screenshot is %d bytes, want it under 300 KiB", len(shot))
	}
	t.Logf("screenshot: %dx%d, %d bytes", cfg.Width, cfg.Height, len(shot))
}

// TestDemoOff: without DEMO, /demo is 404 and nothing writes the drivers.
func TestDemoOff(t *testing.T) {
	srv := startServer(t, nil)
	st, _, b := do(t, http.MethodGet, srv.URL+"/demo", "", "")
	if st != http.StatusNotFound || !strings.Contains(string(b), "NOT_FOUND") {
		t.Errorf("GET /demo without DEMO: %d %s, want 404 NOT_FOUND", st, b)
	}
	if v := driverVersions(t, srv.URL); len(v) != 0 {
		t.Errorf("driver records without DEMO: %v, want none", v)
	}
	st, _, b = do(t, http.MethodPost, srv.URL+"/auth/login", "application/json", `{"name":"Ada"}`)
	if st != http.StatusServiceUnavailable {
		t.Errorf("POST /auth/login without DEMO nor a webhook: %d %s, want 503", st, b)
	}
}

// TestDemoServed checks the page itself: HTML that loads only the
// server's /client.js, kept to its origin by its Content-Security-Policy;
// and the demo's guest login refusing a bad name.
func TestDemoServed(t *testing.T) {
	srv := startServer(t, demoEnv)
	st, h, b := do(t, http.MethodGet, srv.URL+"/demo", "", "")
	if st != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /demo: %d %s", st, h.Get("Content-Type"))
	}
	page := string(b)
	other := strings.ReplaceAll(page, "'http://www.w3.org/2000/svg'", "") // a namespace, not a resource
	if !strings.Contains(page, `from '/client.js'`) || strings.Contains(other, "http://") || strings.Contains(other, "https://") || strings.Contains(other, `"//`) {
		t.Errorf("the page must import /client.js and name no other origin")
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q, want default-src 'self'", csp)
	}
	if n := strings.Count(page, "\n"); n > 300 {
		t.Errorf("the page has %d lines; keep it small", n)
	}
	for _, body := range []string{`{}`, `{"name":""}`, `{"name":"` + strings.Repeat("x", 25) + `"}`, `{"name":"<b>"}`} {
		st, _, b := do(t, http.MethodPost, srv.URL+"/auth/login", "application/json", body)
		if st != http.StatusBadRequest || !strings.Contains(string(b), "INVALID_PARAMETER") {
			t.Errorf("demo login with %s: %d %s, want 400 INVALID_PARAMETER", body, st, b)
		}
	}
}

// demoRules give the demo's visitors only what the page needs of the
// drivers and the RPC: none of the rights of its provider (write, listen,
// provide), which must work all the same.
const demoRules = `record:
  "driver/$n":
    read: true
rpc:
  "demo/add-two":
    request: true
`

// TestDemoTokenModeWithRules: with AUTH_MODE=token and a PERMISSIONS_FILE
// that grants nobody the provider's rights, the provider still moves a
// driver that a stream watches (and only then) and answers add-two.
func TestDemoTokenModeWithRules(t *testing.T) {
	env := rulesEnv(writeRules(t, demoRules))
	for k, v := range demoEnv {
		env[k] = v
	}
	srv := startServer(t, env)
	u := userToken(t, "carol", nil)
	st, b := u.send(t, http.MethodPost, srv.URL+"/rpc/demo/add-two", "application/json", `{"a":2,"b":3}`)
	if st != http.StatusOK || !jsonEqual(b, []byte(`{"data":5}`)) {
		t.Errorf("POST /rpc/demo/add-two as carol: %d %s, want 200 {\"data\":5}", st, b)
	}
	st, b = u.send(t, http.MethodPut, srv.URL+"/records/driver/1", "application/json", `{}`)
	wantStatus(t, "carol writes driver/1", st, b, http.StatusForbidden, "driver/1")

	before := placedDrivers(t, srv.URL, u...)
	stop := watchDriver(t, srv.URL, u, "driver/3", before["driver/3"])
	stop()
	still := waitDriversStill(t, srv.URL, u...)
	for name, v := range still {
		if name != "driver/3" && v != before[name] {
			t.Errorf("%s moved (version %d, was %d) with nobody watching it", name, v, before[name])
		}
	}

	// The server stops while a driver is watched, and moved: it drains
	// and stops the provider with it.
	defer watchDriver(t, srv.URL, u, "driver/5", still["driver/5"])()
	srv.Stop(t)
	noDemoGoroutines(t)
}

// watchDriver opens a stream as u on the driver's record, waits until the
// record is a few versions past since, and returns the function that
// closes the stream.
func watchDriver(t *testing.T, base string, u user, driver string, since int64) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stream?record="+driver, nil)
	req.Header.Set(u[0], u[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET /stream?record=%s: %v %v", driver, resp, err)
	}
	go io.Copy(io.Discard, resp.Body)
	stop = func() { cancel(); resp.Body.Close() }
	deadline := time.Now().Add(15 * time.Second)
	for driverVersions(t, base, u...)[driver] < since+3 {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("%s is not moving while watched: %v", driver, driverVersions(t, base, u...))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stop
}

// TestPGDemoTwoInstances: two instances on one database, each with the
// demo, and a watcher of driver/1 on each. Listening chooses one provider
// for the name, so the driver's path is one: every write moves it at most
// one step (36 map units) from the last, which two providers each moving
// it from where they think it is would break.
func TestPGDemoTwoInstances(t *testing.T) {
	_, srv := pgServers(t, 2, demoEnv)
	watchers := []*sseClient{openSSE(t, srv[0].URL+"/stream?record=driver/1", ""), openSSE(t, srv[1].URL+"/stream?record=driver/1", "")}
	c := watchers[1]
	c.Expect(t, "ready")
	type pos struct {
		Version int64
		Data    struct{ X, Y float64 }
	}
	var last pos
	if err := json.Unmarshal([]byte(c.Expect(t, "snapshot").Data), &last); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		var p pos
		if err := json.Unmarshal([]byte(c.Expect(t, "record").Data), &p); err != nil {
			t.Fatal(err)
		}
		if step := math.Hypot(p.Data.X-last.Data.X, p.Data.Y-last.Data.Y); p.Version != last.Version+1 || step > 36.2 {
			t.Fatalf("driver/1 went from %+v to %+v (%.1f units): not one provider's next step", last, p, step)
		}
		last = p
	}
}
