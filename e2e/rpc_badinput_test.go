package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// rpcBadCase is one malformed RPC request and the problem it must get.
type rpcBadCase struct {
	name           string
	method, target string
	contentType    string
	body           string
	status         int
	code, detail   string // detail: a part of it
}

// TestRPCBadInput: malformed calls, polls and answers get a clear problem
// and change nothing: the call that is waiting still gets the one answer
// that was valid.
func TestRPCBadInput(t *testing.T) {
	srv := startRPCServer(t, map[string]string{"MAX_BODY_BYTES": "1024"})
	registerProvider(t, srv.URL, "ok", "p1")
	res := rpcCall(t, context.Background(), srv.URL, "ok?timeout=30s", `"the only call"`)
	req := rpcPollOne(t, srv.URL, "name=ok&provider=p1")
	answer := "/rpc-requests/" + req.ID
	forged := req.ID[:len(req.ID)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", req.ID[len(req.ID)-1])+1)%16])
	const js, post, get = "application/json", http.MethodPost, http.MethodGet
	var names []string
	for range 101 {
		names = append(names, "name=n"+strings.Repeat("x", len(names)))
	}
	for _, c := range []rpcBadCase{
		{"call: // in the name", post, "/rpc/a//b", js, `1`, 400, "INVALID_NAME", "//"},
		{"call: .. segment", post, "/rpc/a/%2E%2E/b", js, `1`, 400, "INVALID_NAME", ".."},
		{"call: a space", post, "/rpc/a%20b", js, `1`, 400, "INVALID_NAME", "not allowed"},
		{"call: 257 bytes", post, "/rpc/" + strings.Repeat("x", 257), js, `1`, 400, "INVALID_NAME", "at most 256"},
		{"call: timeout 0", post, "/rpc/ok?timeout=0s", js, `1`, 400, "INVALID_PARAMETER", "timeout must be more than 0s and at most 1m0s, not 0s"},
		{"call: timeout 61s", post, "/rpc/ok?timeout=61s", js, `1`, 400, "INVALID_PARAMETER", "not 1m1s"},
		{"call: negative timeout", post, "/rpc/ok?timeout=-1s", js, `1`, 400, "INVALID_PARAMETER", "not -1s"},
		{"call: timeout without unit", post, "/rpc/ok?timeout=10", js, `1`, 400, "INVALID_PARAMETER", `a Go duration such as 10s or 500ms, not "10"`},
		{"call: not JSON", post, "/rpc/ok", js, `{`, 400, "INVALID_JSON", "not valid JSON"},
		{"call: two values", post, "/rpc/ok", js, `1 2`, 400, "INVALID_JSON", "more than one"},
		{"call: no body", post, "/rpc/ok", js, ``, 400, "INVALID_JSON", "not valid JSON"},
		{"call: text/plain", post, "/rpc/ok", "text/plain", `1`, 415, "UNSUPPORTED_MEDIA_TYPE", "JSON"},
		{"call: unpaired surrogate", post, "/rpc/ok", js, `"\ud800"`, 400, "INVALID_JSON", "surrogate"},
		{"call: query with ;", post, "/rpc/ok?timeout=5s;x", js, `1`, 400, "INVALID_PARAMETER", "';'"},
		{"call: too large", post, "/rpc/ok", js, `"` + strings.Repeat("x", 2000) + `"`, 413, "PAYLOAD_TOO_LARGE", "1024"},

		{"poll: no name", get, "/rpc-requests?wait=0s", "", ``, 400, "INVALID_NAME", "?name="},
		{"poll: empty name", get, "/rpc-requests?name=", "", ``, 400, "INVALID_NAME", "empty"},
		{"poll: bad name", get, "/rpc-requests?name=ok&name=a//b", "", ``, 400, "INVALID_NAME", "//"},
		{"poll: 101 names", get, "/rpc-requests?" + strings.Join(names, "&"), "", ``, 400, "INVALID_NAME", "at most 100 names"},
		{"poll: wait 61s", get, "/rpc-requests?name=ok&wait=61s", "", ``, 400, "INVALID_PARAMETER", "wait must be from 0s to 1m0s, not 1m1s"},
		{"poll: negative wait", get, "/rpc-requests?name=ok&wait=-1s", "", ``, 400, "INVALID_PARAMETER", "not -1s"},
		{"poll: wait not a duration", get, "/rpc-requests?name=ok&wait=soon", "", ``, 400, "INVALID_PARAMETER", `not "soon"`},
		{"poll: max 0", get, "/rpc-requests?name=ok&max=0", "", ``, 400, "INVALID_PARAMETER", "max must be a whole number from 1 to 100"},
		{"poll: max 101", get, "/rpc-requests?name=ok&max=101", "", ``, 400, "INVALID_PARAMETER", "from 1 to 100"},
		{"poll: max not a number", get, "/rpc-requests?name=ok&max=all", "", ``, 400, "INVALID_PARAMETER", "from 1 to 100"},
		{"poll: provider with |", get, "/rpc-requests?name=ok&provider=a%7Cb", "", ``, 400, "INVALID_PARAMETER", "provider must be"},
		{"poll: provider too long", get, "/rpc-requests?name=ok&provider=" + strings.Repeat("p", 129), "", ``, 400, "INVALID_PARAMETER", "1-128 bytes"},

		{"answer: unknown id", post, "/rpc-requests/no-such-id", js, `{"data":1}`, 404, "NOT_FOUND", "unknown, expired or already answered"},
		{"answer: forged id", post, "/rpc-requests/" + forged, js, `{"data":1}`, 404, "NOT_FOUND", "unknown"},
		{"answer: empty object", post, answer, js, `{}`, 400, "INVALID_JSON", "exactly one"},
		{"answer: null", post, answer, js, `null`, 400, "INVALID_JSON", "exactly one"},
		{"answer: data and error", post, answer, js, `{"data":1,"error":"x"}`, 400, "INVALID_JSON", "exactly one"},
		{"answer: data and reject", post, answer, js, `{"data":1,"reject":true}`, 400, "INVALID_JSON", "exactly one"},
		{"answer: empty error", post, answer, js, `{"error":""}`, 400, "INVALID_JSON", `"error" must be a non-empty string`},
		{"answer: error not a string", post, answer, js, `{"error":{"msg":"x"}}`, 400, "INVALID_JSON", `"error" must be`},
		{"answer: reject false", post, answer, js, `{"reject":false}`, 400, "INVALID_JSON", `"reject" must be true`},
		{"answer: unknown member", post, answer, js, `{"result":1}`, 400, "INVALID_JSON", `unknown member "result"`},
		{"answer: an array", post, answer, js, `[1]`, 400, "INVALID_JSON", "the body must be an object, not an array"}, // no Go type names
		{"answer: not JSON", post, answer, js, `{"data":`, 400, "INVALID_JSON", "not valid JSON"},
		{"answer: invalid UTF-8", post, answer, js, "{\"data\":\"\xff\"}", 400, "INVALID_JSON", "UTF-8"},
		{"answer: unpaired surrogate", post, answer, js, `{"data":"\udfff"}`, 400, "INVALID_JSON", "surrogate"},
		{"answer: text/plain", post, answer, "text/plain", `{"data":1}`, 415, "UNSUPPORTED_MEDIA_TYPE", "JSON"},
		{"answer: too large", post, answer, js, `{"data":"` + strings.Repeat("x", 2000) + `"}`, 413, "PAYLOAD_TOO_LARGE", "1024"},
	} {
		st, h, b := do(t, c.method, srv.URL+c.target, c.contentType, c.body)
		var p struct {
			Status int
			Code   string
			Detail string
		}
		json.Unmarshal(b, &p)
		if st != c.status || p.Status != st || p.Code != c.code || !strings.Contains(p.Detail, c.detail) ||
			h.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s, want %d %s with %q", c.name, st, h.Get("Content-Type"), b, c.status, c.code, c.detail)
		}
	}
	// Nothing changed: the claim still answers, the call gets that answer,
	// and no bad call was queued.
	mustAnswer(t, srv.URL, req.ID, `{"data":"the only answer"}`)
	if got := waitResult(t, res); got.Status != http.StatusOK || got.data() != `"the only answer"` {
		t.Fatalf("the call got %v", got)
	}
	if st, reqs := rpcPoll(t, srv.URL, "name=ok&wait=0s&provider=p2"); st != http.StatusNoContent {
		t.Fatalf("a bad call was queued: %+v", reqs)
	}
}
