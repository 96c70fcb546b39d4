// Package clientjs embeds the browser library that the server serves at
// GET /client.js, with its TypeScript declarations at GET /client.d.ts.
package clientjs

import (
	_ "embed"
	"net/http"
)

//go:embed client.js
var js []byte

//go:embed client.d.ts
var dts []byte

// JS serves client.js.
func JS(w http.ResponseWriter, _ *http.Request) { serve(w, "text/javascript; charset=utf-8", js) }

// DTS serves client.d.ts.
func DTS(w http.ResponseWriter, _ *http.Request) {
	serve(w, "application/typescript; charset=utf-8", dts)
}

func serve(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}
