package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

type recordBody struct {
	Name    string          `json:"name"`
	Version int64           `json:"version"`
	Path    string          `json:"path,omitempty"`
	Data    json.RawMessage `json:"data"`
}

func wantsStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// getRecord serves GET and HEAD /records/{name}, and the per-record stream.
func getRecord(records *realtime.Records, stream http.HandlerFunc) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		name, err := nameParam(r)
		if err != nil {
			return err
		}
		path, err := pathQuery(r)
		if err != nil {
			return err
		}
		var rec api.Record
		if path.IsRoot() {
			rec, err = records.Get(r.Context(), userFrom(r), name)
		} else {
			rec, err = records.GetPath(r.Context(), userFrom(r), name, path)
		}
		if r.Method == http.MethodGet && wantsStream(r) {
			// A read that the rules refuse is 403 in either form; a
			// missing record or path is no error in a stream.
			if api.IsCode(err, api.CodePermissionDenied) {
				return err
			}
			stream(w, r)
			return nil
		}
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(rec.Version))
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return nil
		}
		writeJSON(w, http.StatusOK, recordBody{Name: rec.Name, Version: rec.Version, Path: path.String(), Data: rec.Data})
		return nil
	})
}

// listRecords serves GET /records?prefix=&after=&limit=.
func listRecords(records *realtime.Records) http.HandlerFunc {
	type item struct {
		Name    string `json:"name"`
		Version int64  `json:"version"`
	}
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		limit, err := intQuery(r, "limit", 100, 1, realtime.MaxListLimit)
		if err != nil {
			return err
		}
		prefix, err := textQuery(r, "prefix")
		if err != nil {
			return err
		}
		after, err := textQuery(r, "after")
		if err != nil {
			return err
		}
		recs, after, err := records.List(r.Context(), userFrom(r), prefix, after, limit)
		if err != nil {
			return err
		}
		var next *string
		if after != "" {
			next = &after
		}
		items := make([]item, len(recs))
		for i, rec := range recs {
			items[i] = item{rec.Name, rec.Version}
		}
		writeJSON(w, http.StatusOK, map[string]any{"records": items, "next": next})
		return nil
	})
}

// writeRecord serves PUT, PATCH and DELETE /records/{name}.
func writeRecord(x *writes) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		op, err := recordOp(r)
		if err != nil {
			return err
		}
		changes, err := x.write(r, []realtime.Op{op})
		if err != nil {
			var e *api.Error
			if errors.As(err, &e) {
				return e.Without("index") // a single write is not a batch
			}
			return err
		}
		ch := changes[0]
		w.Header().Set("ETag", etag(ch.Version))
		switch {
		case ch.Kind == api.KindDelete:
			w.WriteHeader(http.StatusNoContent)
		case ch.Created && r.Method == http.MethodPut:
			writeJSON(w, http.StatusCreated, recordBody{Name: ch.Name, Version: ch.Version, Data: ch.Data})
		default:
			writeJSON(w, http.StatusOK, recordBody{Name: ch.Name, Version: ch.Version, Data: ch.Data})
		}
		return nil
	})
}

// recordOp reads a single write from the request.
func recordOp(r *http.Request) (realtime.Op, error) {
	var op realtime.Op
	var err error
	if op.Name, err = nameParam(r); err != nil {
		return op, err
	}
	if op.Path, err = pathQuery(r); err != nil {
		return op, err
	}
	if op.Cond, err = conditions(r.Header); err != nil {
		return op, err
	}
	switch r.Method {
	case http.MethodPut:
		op.Op = "put"
		op.Data, err = readJSON(r, nil)
	case http.MethodPatch:
		op.Op, op.ContentType = "patch", mediaType(r)
		if op.ContentType != realtime.MergePatch && op.ContentType != realtime.JSONPatch {
			return op, api.Errorf(api.CodeUnsupportedMediaType,
				"PATCH takes %s or %s, not %q", realtime.MergePatch, realtime.JSONPatch, r.Header.Get("Content-Type"))
		}
		if !op.Path.IsRoot() {
			return op, api.Errorf(api.CodeInvalidPath, "PATCH applies to the whole record; use PUT with ?path= to set a value")
		}
		op.Data, err = readBody(r)
	case http.MethodDelete:
		op.Op = "delete"
	}
	return op, err
}

// batch serves POST /batch.
func batch(x *writes) http.HandlerFunc {
	type result struct {
		Name    string `json:"name"`
		Version int64  `json:"version"`
	}
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		var body struct {
			Ops []json.RawMessage `json:"ops"` // each decoded alone, so that its errors name its index
		}
		if _, err := readJSON(r, &body); err != nil {
			return err
		}
		if len(body.Ops) == 0 {
			return api.Errorf(api.CodeInvalidJSON, `a batch is {"ops":[...]} with at least one op`)
		}
		ops := make([]realtime.Op, len(body.Ops))
		for i, raw := range body.Ops {
			var b batchOp
			if err := json.Unmarshal(raw, &b); err != nil {
				return shapeError(err, "op "+strconv.Itoa(i)).With("index", i)
			}
			op, err := b.op()
			if err != nil {
				var e *api.Error
				if errors.As(err, &e) {
					return e.With("index", i)
				}
				return err
			}
			ops[i] = op
		}
		changes, err := x.write(r, ops)
		if err != nil {
			return err
		}
		results := make([]result, len(changes))
		for i, ch := range changes {
			results[i] = result{ch.Name, ch.Version}
		}
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
		return nil
	})
}

// batchOp is one op of a POST /batch body.
type batchOp struct {
	Op          string          `json:"op"`
	Name        string          `json:"name"`
	Path        string          `json:"path"`
	Data        json.RawMessage `json:"data"`
	Patch       json.RawMessage `json:"patch"`
	ContentType string          `json:"contentType"`
	IfMatch     int64           `json:"ifMatch"`
}

func (b batchOp) op() (realtime.Op, error) {
	op := realtime.Op{Op: b.Op, Name: b.Name, Data: b.Data, Cond: api.Cond{IfMatch: b.IfMatch}}
	if b.Path != "" {
		p, err := api.ParsePath(b.Path)
		if err != nil {
			return op, err
		}
		op.Path = p
	}
	switch b.Op {
	case "put":
		if b.Data == nil {
			return op, api.Errorf(api.CodeInvalidJSON, "a put op needs \"data\"")
		}
	case "patch":
		op.Data, op.ContentType = b.Patch, b.ContentType
		if b.Patch == nil {
			return op, api.Errorf(api.CodeInvalidJSON, "a patch op needs \"patch\"")
		}
		if op.ContentType == "" {
			op.ContentType = realtime.MergePatch
			if strings.HasPrefix(strings.TrimSpace(string(b.Patch)), "[") {
				op.ContentType = realtime.JSONPatch
			}
		}
	}
	return op, nil
}
