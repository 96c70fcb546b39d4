package handlers

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// readBody reads a request body within the MaxBytesReader set by the
// limits middleware.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, api.Errorf(api.CodePayloadTooLarge, "the body is larger than %d bytes", tooBig.Limit)
	}
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidJSON, "reading the body: %v", err)
	}
	return b, nil
}

// mediaType returns the request's content type without parameters.
func mediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// requireJSON accepts a JSON body: no content type, application/json or
// any +json type.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt := mediaType(r); ct == "" || mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return nil
	}
	return api.Errorf(api.CodeUnsupportedMediaType, "the body must be JSON (Content-Type: application/json), not %q", ct)
}

// readJSON reads a JSON body and decodes it into v (nil: only validate).
func readJSON(r *http.Request, v any) ([]byte, error) {
	if err := requireJSON(r); err != nil {
		return nil, err
	}
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		if _, err := api.Decode(b); err != nil {
			return nil, err // the reason, in a sentence
		}
		return nil, api.Errorf(api.CodeInvalidJSON, "the body is not valid JSON")
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, api.Errorf(api.CodeInvalidJSON, "the body does not have the expected shape: %v", err)
		}
	}
	return b, nil
}

// nameParam returns the validated name that ends the URL path (names may
// hold '/').
func nameParam(r *http.Request) (string, error) {
	name := chi.URLParam(r, "*")
	if r.URL.RawPath != "" { // chi routed on the escaped path: decode once
		var err error
		if name, err = url.PathUnescape(name); err != nil {
			return "", api.Errorf(api.CodeInvalidName, "the name is not a valid URL path")
		}
	}
	return name, api.ValidateName(name)
}

// pathQuery returns the parsed ?path=, or the root path when absent.
func pathQuery(r *http.Request) (api.Path, error) {
	q := r.URL.Query()
	if !q.Has("path") {
		return api.Path{}, nil
	}
	return api.ParsePath(q.Get("path"))
}

// version parses an ETag-like "<version>" (quotes optional, W/ refused).
func version(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// intQuery parses an optional integer query parameter within [lo, hi].
func intQuery(r *http.Request, key string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, api.Errorf(api.CodeInvalidJSON, "%s must be a whole number from %d to %d, not %q", key, lo, hi, s)
	}
	return n, nil
}
