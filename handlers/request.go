package handlers

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/api"
)

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
	if ct == "application/json" {
		return nil // the usual case, without parsing parameters
	}
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
	if err := api.Validate(b); err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, shapeError(err, "the body")
		}
	}
	return b, nil
}

// shapeError says in JSON's terms, never Go's, where a value that is
// valid JSON (whole, "the body", or a part of it) does not have the shape
// asked for: which member, what JSON it should hold, what it holds.
func shapeError(err error, whole string) *api.Error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return api.Errorf(api.CodeInvalidJSON, "%s does not have the expected shape", whole)
	}
	what := whole
	if te.Field != "" {
		what = strconv.Quote(te.Field)
	}
	return api.Errorf(api.CodeInvalidJSON, "%s must be %s, not %s (at byte %d of %s)",
		what, jsonKind(te.Type), jsonValue(te.Value), te.Offset, whole)
}

// jsonKind names the JSON that decodes into t.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another kind of value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another kind of value"
}

// jsonValue names what encoding/json found: "array", "number 1.5"...
func jsonValue(v string) string {
	switch {
	case v == "array", v == "object":
		return "an " + v
	case v == "bool":
		return "a boolean"
	case strings.HasPrefix(v, "number "):
		return "the " + v
	case v == "":
		return "that"
	}
	return "a " + v
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

// namedJSON reads the name that ends the URL path and the JSON body.
func namedJSON(r *http.Request) (string, []byte, error) {
	name, err := nameParam(r)
	if err != nil {
		return "", nil, err
	}
	body, err := readJSON(r, nil)
	return name, body, err
}

// pathQuery returns the parsed ?path=, or the root path when absent.
func pathQuery(r *http.Request) (api.Path, error) {
	q := r.URL.Query()
	if !q.Has("path") {
		return api.Path{}, nil
	}
	return api.ParsePath(q.Get("path"))
}

// conditions reads a write's If-Match and If-None-Match headers (RFC
// 9110). Each takes * or one entity tag, "<version>" (the quotes may be
// left out). A weak tag never matches If-Match, which compares strongly;
// an opaque tag that is no version of ours matches nothing. Anything else
// is an INVALID_PARAMETER error.
func conditions(h http.Header) (api.Cond, error) {
	var c api.Cond
	if s, ok := header(h, "If-Match"); ok {
		v, weak, err := entityTag(s, "If-Match")
		switch {
		case err != nil:
			return c, err
		case v == anyTag:
			c.IfExists = true
		case weak || v == 0:
			c.IfMatch = -1
		default:
			c.IfMatch = v
		}
	}
	if s, ok := header(h, "If-None-Match"); ok {
		v, _, err := entityTag(s, "If-None-Match")
		switch {
		case err != nil:
			return c, err
		case v == anyTag:
			c.IfNoneMatch = true
		default:
			c.IfNotVersion = v
		}
	}
	return c, nil
}

// anyTag is what entityTag returns for "*".
const anyTag = -1

// header returns a header's value, its lines joined as RFC 9110 allows,
// and whether it is set.
func header(h http.Header, key string) (string, bool) {
	s := strings.TrimSpace(strings.Join(h.Values(key), ","))
	return s, s != ""
}

// entityTag parses "*" (anyTag), or one entity tag: its version, 0 for an
// opaque tag that is none of ours, and whether it is weak.
func entityTag(s, key string) (int64, bool, error) {
	if s == "*" {
		return anyTag, false, nil
	}
	weak := strings.HasPrefix(s, "W/")
	tag := strings.TrimPrefix(s, "W/")
	quoted := len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"'
	if quoted {
		tag = tag[1 : len(tag)-1]
	}
	n, err := strconv.ParseInt(tag, 10, 64)
	switch {
	case strings.ContainsAny(tag, "\",\x00 \t") || !quoted && (weak || err != nil || n <= 0):
		return 0, false, api.InvalidParameter(key, "%s takes * or one version in quotes, such as \"3\"; not %q", key, s)
	case err != nil || n <= 0:
		return 0, weak, nil
	}
	return n, weak, nil
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
		return 0, api.InvalidParameter(key, "%s must be a whole number from %d to %d, not %q", key, lo, hi, s)
	}
	return n, nil
}

// textQuery returns an optional query parameter that must be text: UTF-8
// without NUL, as every name is (a database cannot compare anything else
// with its names).
func textQuery(r *http.Request, key string) (string, error) {
	s := r.URL.Query().Get(key)
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return "", api.InvalidParameter(key, "%s must be UTF-8 text without NUL, not %q", key, s)
	}
	return s, nil
}

// checkQuery refuses every request whose query string does not parse,
// before any handler reads it: r.URL.Query() drops what it cannot parse,
// and a ?path= lost that way would make a path write replace the whole
// record.
func checkQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			writeError(w, r, queryError(r.URL.RawQuery, err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// queryError names the parameter that made url.ParseQuery fail.
func queryError(raw string, err error) *api.Error {
	for _, kv := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		key, kerr := url.QueryUnescape(k)
		if kerr != nil {
			key = k
		}
		switch {
		case strings.Contains(kv, ";"):
			return api.InvalidParameter(key, "the query string separates parameters with ';' at %q; use '&'", kv)
		case kerr != nil:
			return api.InvalidParameter(key, "the query parameter name %q is not valid URL encoding (%%XX)", k)
		}
		if _, err := url.QueryUnescape(v); err != nil {
			return api.InvalidParameter(key, "query parameter %s is not valid URL encoding (%%XX): %q", key, v)
		}
	}
	return api.Errorf(api.CodeInvalidParameter, "the query string does not parse: %v", err)
}
