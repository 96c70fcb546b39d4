// Package handlers is Switchboard's HTTP layer: the routes, middleware,
// request decoding, problem+json errors and the SSE writer. It knows the
// engine (realtime) and the vocabulary (api), never a database.
package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// statusOf maps every stable code to its HTTP status.
var statusOf = map[api.Code]int{
	api.CodeInvalidName:          http.StatusBadRequest,
	api.CodeInvalidPath:          http.StatusBadRequest,
	api.CodeInvalidJSON:          http.StatusBadRequest,
	api.CodeInvalidParameter:     http.StatusBadRequest,
	api.CodeNotFound:             http.StatusNotFound,
	api.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	api.CodeVersionConflict:      http.StatusPreconditionFailed,
	api.CodePatchFailed:          http.StatusConflict,
	api.CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	api.CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	api.CodeUnauthenticated:      http.StatusUnauthorized,
	api.CodeAuthUnavailable:      http.StatusServiceUnavailable,
	api.CodePermissionDenied:     http.StatusForbidden,
	api.CodeNoRPCProvider:        http.StatusServiceUnavailable,
	api.CodeRPCTimeout:           http.StatusGatewayTimeout,
	api.CodeRPCError:             http.StatusBadGateway,
	api.CodeRateLimited:          http.StatusTooManyRequests,
	api.CodeLimitExceeded:        http.StatusTooManyRequests,
	api.CodeUnavailable:          http.StatusServiceUnavailable,
	api.CodeInternal:             http.StatusInternalServerError,
}

// handle adapts a handler that returns its error, which is answered as
// problem+json: each handler then reads as its happy path.
func handle(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			writeError(w, r, err)
		}
	}
}

// writeError answers err as application/problem+json. An error without a
// code is internal: logged, and never shown to the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *api.Error
	if !errors.As(err, &e) || e.Code == api.CodeInternal {
		loggerFrom(r).ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		e = api.Errorf(api.CodeInternal, "the server could not complete the request")
	}
	status := statusOf[e.Code]
	id := ""
	if st := stateFrom(r); st != nil {
		st.code, id = e.Code, st.id
		if l, ok := realtime.LimitOf(err); ok {
			st.limit = string(l)
		}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	w.Write(problem(status, e, id))
}

// problem encodes e as an RFC 9457 problem body, with a newline, and the
// request's id as requestId (left out when id is "").
func problem(status int, e *api.Error, id string) []byte {
	body := map[string]any{
		"type":   "urn:switchboard:error:" + string(e.Code),
		"title":  http.StatusText(status),
		"status": status,
		"detail": e.Detail,
		"code":   e.Code,
	}
	for k, v := range e.Fields {
		body[k] = v
	}
	if id != "" {
		body["requestId"] = id
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(body)
	return b.Bytes()
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
