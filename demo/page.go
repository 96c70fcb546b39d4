package demo

import (
	_ "embed"
	"net/http"
)

//go:embed demo.html
var page []byte

// Page serves the demo's page (GET /demo): one HTML document whose only
// other resource is the server's /client.js. Its Content-Security-Policy
// keeps it to its own origin: no CDN, no font, nothing from elsewhere.
func Page(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	w.Write(page)
}
