package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// readmeExample returns the browser example that the README opens with:
// the html block right after the demo's screenshot, which comes first
// after the title.
func readmeExample(t *testing.T) (example, opening string) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	opening, _, _ = strings.Cut(string(b), "\n## ")
	var lines []string
	for _, l := range strings.Split(opening, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "# ") ||
		!strings.HasPrefix(lines[1], "![") || !strings.HasSuffix(lines[1], "(docs/demo.png)") || lines[2] != "```html" {
		t.Fatalf("the README must open with its title, the demo's screenshot ![...](docs/demo.png) and a ```html block; it opens with %q", lines[:min(3, len(lines))])
	}
	_, rest, _ := strings.Cut(opening, "```html\n")
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the README's html block does not end")
	}
	return example, opening
}

// TestReadmeBrowserExample runs the README's browser example as written
// (only the server's address differs) in two windows of a real Chromium,
// opened from a file as the README says: a click shows up in both, and
// clicks of both at once are all counted, through the conditional write
// and its onConflict.
func TestReadmeBrowserExample(t *testing.T) {
	example, opening := readmeExample(t)
	if n := strings.Count(strings.TrimSpace(example), "\n") + 1; n > 10 {
		t.Errorf("the README's browser example has %d lines, want ten at most", n)
	}
	for _, want := range []string{"DEMO=true", "make run", "http://localhost:8080/demo"} {
		if !strings.Contains(opening, want) {
			t.Errorf("the README's opening does not say %q", want)
		}
	}
	if !strings.Contains(example, `import {switchboard} from 'http://localhost:8080/client.js'`) {
		t.Fatalf("the example does not import the server's /client.js:\n%s", example)
	}
	srv := startServer(t, map[string]string{"DEMO": "true", "CORS_ORIGINS": "*"})
	page := filepath.Join(t.TempDir(), "hello.html")
	if err := os.WriteFile(page, []byte(strings.ReplaceAll(example, "http://localhost:8080", srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}

	a := newBrowser(t, 60*time.Second)
	b, cancelB := chromedp.NewContext(a)
	defer cancelB()
	for name, ctx := range map[string]context.Context{"A": a, "B": b} {
		if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page)); err != nil {
			t.Fatalf("window %s: open %s: %v", name, page, err)
		}
	}
	shows := func(n string) string { return `document.getElementById('b').textContent === 'Clicks: ` + n + `'` }
	if err := chromedp.Do(a, chromedp.Click(`#b`)); err != nil {
		t.Fatal(err)
	}
	waitPage(t, a, "window A to show its click", shows("1"), 10*time.Second)
	waitPage(t, b, "window B to show A's click", shows("1"), 10*time.Second)

	// Three clicks at once, two in A and one in B: none is lost.
	var wg sync.WaitGroup
	for ctx, clicks := range map[context.Context]string{a: `b.click(); b.click(); true`, b: `b.click(); true`} {
		wg.Go(func() {
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](clicks)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitPage(t, a, "window A to count every click", shows("4"), 10*time.Second)
	waitPage(t, b, "window B to count every click", shows("4"), 10*time.Second)
	st, _, body := do(t, http.MethodGet, srv.URL+"/records/hello/clicks", "", "")
	if st != http.StatusOK || !strings.Contains(string(body), `"data":{"n":4}`) {
		t.Errorf("GET /records/hello/clicks: %d %s, want n 4", st, body)
	}
}
