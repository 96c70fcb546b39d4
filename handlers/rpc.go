package handlers

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// callRPC serves POST /rpc/{name}?timeout=: 200 {"data"} with the
// provider's answer.
func callRPC(rpc *realtime.RPC) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		timeout, err := durationQuery(r, "timeout", realtime.DefaultCallTimeout)
		if err != nil {
			return err
		}
		name, body, err := namedJSON(r)
		if err != nil {
			return err
		}
		data, err := rpc.Call(r.Context(), userFrom(r), name, body, timeout)
		if err != nil {
			if r.Context().Err() != nil {
				return nil // the requester went away; its request is freed
			}
			return err
		}
		writeJSON(w, http.StatusOK, struct {
			Data json.RawMessage `json:"data"`
		}{data})
		return nil
	})
}

// pollRPC serves GET /rpc-requests?name=&provider=&wait=&max=: 200
// {"requests"} as soon as there is work, 204 after wait.
func pollRPC(rpc *realtime.RPC) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		wait, err := durationQuery(r, "wait", realtime.DefaultPollWait)
		if err != nil {
			return err
		}
		limit, err := intQuery(r, "max", 1, 1, realtime.MaxPollRequests)
		if err != nil {
			return err
		}
		q := r.URL.Query()
		reqs, err := rpc.Poll(r.Context(), userFrom(r), realtime.Poll{
			Names: q["name"], Provider: q.Get("provider"), Wait: wait, Max: limit,
		})
		switch {
		case err != nil && r.Context().Err() != nil:
			return nil // the provider went away
		case err != nil:
			return err
		case len(reqs) == 0:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, http.StatusOK, map[string][]api.RPCRequest{"requests": reqs})
		}
		return nil
	})
}

// answerRPC serves POST /rpc-requests/{id}: {"data"}, {"error"} or
// {"reject":true}; 204.
func answerRPC(rpc *realtime.RPC) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		var body map[string]json.RawMessage
		if _, err := readJSON(r, &body); err != nil {
			return err
		}
		a, err := rpcAnswer(body)
		if err != nil {
			return err
		}
		if err := rpc.Answer(r.Context(), chi.URLParam(r, "id"), a); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// rpcAnswer reads an answer body; the service checks that it holds
// exactly one answer.
func rpcAnswer(body map[string]json.RawMessage) (api.RPCAnswer, error) {
	var a api.RPCAnswer
	for k, v := range body {
		switch k {
		case "data":
			a.Data = v
		case "error":
			if json.Unmarshal(v, &a.Error) != nil || a.Error == "" {
				return a, api.Errorf(api.CodeInvalidJSON, `"error" must be a non-empty string: the message for the requester`)
			}
		case "reject":
			if json.Unmarshal(v, &a.Reject) != nil || !a.Reject {
				return a, api.Errorf(api.CodeInvalidJSON, `"reject" must be true`)
			}
		default:
			return a, api.Errorf(api.CodeInvalidJSON,
				`unknown member %q: an answer is {"data": <result>}, {"error": "message"} or {"reject": true}`, k)
		}
	}
	return a, nil
}

// durationQuery parses an optional query parameter holding a Go duration.
// The service checks its range.
func durationQuery(r *http.Request, key string, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, api.InvalidParameter(key, "%s must be a Go duration such as 10s or 500ms, not %q", key, s)
	}
	return d, nil
}
