package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/switchboard-dev/switchboard/api"
)

// Content types of the two patch formats.
const (
	MergePatch = "application/merge-patch+json"
	JSONPatch  = "application/json-patch+json"
)

// MaxBatchOps is the most operations one batch may hold.
const MaxBatchOps = 1000

// MaxListLimit is the largest page of a record listing.
const MaxListLimit = 1000

// Records is the record service: reads, and writes turned into atomic
// batches of the Store. It is safe for concurrent use.
type Records struct {
	store    api.Store
	access   Access
	maxBytes int
}

// NewRecords returns the record service over store. maxBytes bounds a
// record's compact JSON after every write (MAX_RECORD_BYTES).
func NewRecords(store api.Store, access Access, maxBytes int) *Records {
	return &Records{store: store, access: access, maxBytes: maxBytes}
}

// Op is one write, as a batch or a single request describes it. Path is
// the zero Path for the whole record.
type Op struct {
	Op          string // "put", "patch" or "delete"
	Name        string
	Path        api.Path
	Data        json.RawMessage // put: the value; patch: the patch
	ContentType string          // patch: MergePatch or JSONPatch
	api.Cond
}

// Get returns a record, after the read check, which sees the value read
// (null when the record does not exist): a refusal is PERMISSION_DENIED
// whether or not the record exists.
func (r *Records) Get(ctx context.Context, user api.User, name string) (api.Record, error) {
	rec, err := r.store.Get(ctx, name)
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		return api.Record{}, err
	}
	if denied := r.access.Allow(ctx, Request{User: user, Action: ActRead, Section: SecRecord, Name: name, Data: rec.Data}); denied != nil {
		return api.Record{}, denied
	}
	return rec, err
}

// GetPath returns the value at path inside a record, or NOT_FOUND.
func (r *Records) GetPath(ctx context.Context, user api.User, name string, path api.Path) (api.Record, error) {
	rec, err := r.Get(ctx, user, name)
	if err != nil {
		return rec, err
	}
	doc, err := api.Decode(rec.Data)
	if err != nil {
		return rec, err
	}
	v, ok := api.Lookup(doc, path)
	if !ok {
		return rec, api.Errorf(api.CodeNotFound, "record %q has no value at %q", name, path)
	}
	rec.Data = api.Encode(v)
	return rec, nil
}

// List returns a page of up to limit record names and versions under
// prefix, after the cursor after, leaving out the names the caller may not
// read; next is the cursor of the page after it, "" at the end. A page may
// hold fewer than limit names (even none) and still have a next one: the
// names read to fill it are bounded, so that a caller who may read few of
// many names does not make one request scan them all.
func (r *Records) List(ctx context.Context, user api.User, prefix, after string, limit int) (recs []api.Record, next string, err error) {
	if !api.NamePrefix(prefix) {
		return nil, "", nil // no name starts so; a store may not even take it
	}
	if _, all := r.access.(AllowAll); all {
		if recs, err = r.store.List(ctx, prefix, after, limit+1); err != nil {
			return nil, "", err
		}
		if len(recs) > limit {
			recs = recs[:limit]
			next = recs[limit-1].Name
		}
		return recs, next, nil
	}
	scan := max(limit+1, listScanMin)
	for budget := listScanPages; budget > 0; budget-- {
		page, err := r.store.List(ctx, prefix, after, scan)
		if err != nil {
			return nil, "", err
		}
		readable, err := r.readable(ctx, user, page)
		if err != nil {
			return nil, "", err
		}
		for i, rec := range page {
			if !readable[i] {
				continue
			}
			if len(recs) == limit {
				return recs, recs[limit-1].Name, nil
			}
			recs = append(recs, rec)
		}
		if len(page) < scan {
			return recs, "", nil
		}
		after = page[len(page)-1].Name
	}
	return recs, after, nil
}

// Bounds of the names one listing reads to fill a page under read rules:
// listScanPages pages of at least listScanMin names.
const (
	listScanPages = 10
	listScanMin   = 100
)

// readable decides which records of a page the caller may read. Names
// whose rule depends on the data are decided on their data, read at one
// position of the log (a record deleted since: null).
func (r *Records) readable(ctx context.Context, user api.User, page []api.Record) ([]bool, error) {
	var need []string
	for _, rec := range page {
		if r.access.DependsOnData(SecRecord, ActRead, rec.Name) {
			need = append(need, rec.Name)
		}
	}
	data := map[string]json.RawMessage{}
	if len(need) > 0 {
		_, recs, err := r.store.Snapshot(ctx, need)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			data[rec.Name] = rec.Data
		}
	}
	out := make([]bool, len(page))
	for i, rec := range page {
		out[i] = r.access.Allow(ctx, Request{User: user, Action: ActRead, Section: SecRecord, Name: rec.Name, Data: data[rec.Name]}) == nil
	}
	return out, nil
}

// Write applies ops atomically, in order, and returns one change per op.
func (r *Records) Write(ctx context.Context, user api.User, ops []Op) ([]api.Change, error) {
	if len(ops) > MaxBatchOps {
		return nil, api.Errorf(api.CodeInvalidJSON, "a batch holds at most %d ops, not %d", MaxBatchOps, len(ops))
	}
	writes := make([]api.Write, len(ops))
	for i, op := range ops {
		w, err := r.write(ctx, user, op)
		if err != nil {
			var e *api.Error
			if errors.As(err, &e) {
				return nil, e.With("index", i)
			}
			return nil, err
		}
		writes[i] = w
	}
	return r.store.Write(ctx, writes)
}

// write turns an op into a Store write whose Apply runs the permission
// check with the record's value before and after.
func (r *Records) write(ctx context.Context, user api.User, op Op) (api.Write, error) {
	if err := api.ValidateName(op.Name); err != nil {
		return api.Write{}, err
	}
	w := api.Write{Name: op.Name, Cond: op.Cond}
	if op.Op == "delete" && op.Path.IsRoot() {
		w.Kind = api.KindDelete
		w.Check = func(cur json.RawMessage, _ bool) error {
			return r.access.Allow(ctx, Request{User: user, Action: ActDelete, Name: op.Name, OldData: cur})
		}
		return w, nil
	}
	kind, edit, err := r.editOf(op)
	if err != nil {
		return w, err
	}
	w.Kind, w.Apply = kind, r.checked(ctx, user, op.Name, edit)
	return w, nil
}

// edit is what an op does to a record's value, before any check.
type edit func(cur json.RawMessage, exists bool) (json.RawMessage, error)

// editOf returns the kind of change an op makes and its edit, for every
// op but the delete of a whole record.
func (r *Records) editOf(op Op) (api.Kind, edit, error) {
	switch op.Op {
	case "put":
		value, err := api.Compact(op.Data)
		if err != nil {
			return "", nil, err
		}
		if op.Path.IsRoot() {
			return api.KindSet, func(json.RawMessage, bool) (json.RawMessage, error) { return value, nil }, nil
		}
		return api.KindPatch, func(cur json.RawMessage, _ bool) (json.RawMessage, error) {
			return setPath(cur, op.Path, value)
		}, nil
	case "patch":
		apply, err := patcher(op.ContentType, op.Data, r.maxBytes)
		if err != nil {
			return "", nil, err
		}
		return api.KindPatch, func(cur json.RawMessage, exists bool) (json.RawMessage, error) {
			if !exists {
				return nil, api.NotFound(op.Name)
			}
			return apply(cur)
		}, nil
	case "delete":
		return api.KindPatch, func(cur json.RawMessage, exists bool) (json.RawMessage, error) {
			if !exists {
				return nil, api.NotFound(op.Name)
			}
			return deletePath(op.Name, cur, op.Path)
		}, nil
	}
	return "", nil, api.Errorf(api.CodeInvalidJSON, "op must be \"put\", \"patch\" or \"delete\", not %q", op.Op)
}

// checked is the Apply of a write: the edit, then the bounds of what is
// stored and the permission to write it, with the value before and after.
// An edit that fails says something of the record (a JSON Patch test that
// fails, a path or a record that is missing): to a caller who may read it
// only, the others get the read's refusal.
func (r *Records) checked(ctx context.Context, user api.User, name string, e edit) func(json.RawMessage, bool) (json.RawMessage, error) {
	return func(cur json.RawMessage, exists bool) (json.RawMessage, error) {
		next, err := e(cur, exists)
		if err != nil {
			if denied := r.access.Allow(ctx, Request{User: user, Action: ActRead, Section: SecRecord, Name: name, Data: cur}); denied != nil {
				return nil, denied
			}
			return nil, err
		}
		if err := r.checkResult(name, next); err != nil {
			return nil, err
		}
		act := ActWrite
		if !exists {
			act = ActCreate
		}
		if err := r.access.Allow(ctx, Request{User: user, Action: act, Name: name, Data: next, OldData: cur}); err != nil {
			return nil, err
		}
		return next, nil
	}
}

// checkResult bounds what a write stores, whatever its body was: a small
// path write or patch can still make a record too large or too deep to send.
func (r *Records) checkResult(name string, next json.RawMessage) error {
	if len(next) > r.maxBytes {
		return LimitRecordBytes.Refuse(api.Errorf(api.CodePayloadTooLarge,
			"record %q would be %d bytes after this write; a record is at most %d bytes (MAX_RECORD_BYTES)", name, len(next), r.maxBytes))
	}
	return api.CheckDepth(next, fmt.Sprintf("record %q after this write", name))
}

func setPath(cur json.RawMessage, p api.Path, value json.RawMessage) (json.RawMessage, error) {
	var doc any
	if cur != nil {
		var err error
		if doc, err = api.Decode(cur); err != nil {
			return nil, err
		}
	}
	v, err := api.Decode(value)
	if err != nil {
		return nil, err
	}
	if doc, err = api.SetAt(doc, p, v); err != nil {
		return nil, err
	}
	return api.Encode(doc), nil
}

func deletePath(name string, cur json.RawMessage, p api.Path) (json.RawMessage, error) {
	doc, err := api.Decode(cur)
	if err != nil {
		return nil, err
	}
	doc, ok := api.DeleteAt(doc, p)
	if !ok {
		return nil, api.Errorf(api.CodeNotFound, "record %q has no value at %q", name, p)
	}
	return api.Encode(doc), nil
}

// patcher validates a patch and returns the function that applies it.
// Copies within a JSON Patch may add at most maxBytes in all: each copy can
// double a document, so a small patch could otherwise build a huge one in
// memory before its result is checked.
func patcher(contentType string, patch json.RawMessage, maxBytes int) (func(json.RawMessage) (json.RawMessage, error), error) {
	if _, err := api.Decode(patch); err != nil {
		return nil, err
	}
	switch contentType {
	case MergePatch:
		return func(doc json.RawMessage) (json.RawMessage, error) {
			if string(doc) == "null" {
				doc = json.RawMessage("{}") // RFC 7396: a target that is not an object is {}; the library refuses null
			}
			out, err := jsonpatch.MergePatch(doc, patch)
			if err != nil {
				return nil, api.Errorf(api.CodePatchFailed, "merge patch: %v", err)
			}
			return api.Compact(out)
		}, nil
	case JSONPatch:
		p, err := decodeJSONPatch(patch)
		if err != nil {
			return nil, err
		}
		opts := jsonpatch.NewApplyOptions()
		opts.AccumulatedCopySizeLimit = int64(maxBytes)
		opts.EscapeHTML = false // keep <, > and & as they were written, as every other write does
		return func(doc json.RawMessage) (json.RawMessage, error) {
			out, err := p.ApplyWithOptions(doc, opts)
			var tooBig *jsonpatch.AccumulatedCopySizeError
			if errors.As(err, &tooBig) {
				return nil, LimitRecordBytes.Refuse(api.Errorf(api.CodePayloadTooLarge, "the JSON Patch copies more than %d bytes (MAX_RECORD_BYTES)", maxBytes))
			}
			if err != nil {
				return nil, api.Errorf(api.CodePatchFailed, "JSON Patch: %v", err)
			}
			return api.Compact(out)
		}, nil
	}
	return nil, api.Errorf(api.CodeUnsupportedMediaType, "a patch is %s or %s, not %q", MergePatch, JSONPatch, contentType)
}

// decodeJSONPatch decodes a JSON Patch and checks that every op has the
// members RFC 6902 requires of it: the library leaves that to the moment
// it applies the op, and crashes on a "test" without "value".
func decodeJSONPatch(patch json.RawMessage) (jsonpatch.Patch, error) {
	bad := func(format string, args ...any) error {
		return api.Errorf(api.CodeInvalidJSON, "not a JSON Patch (RFC 6902): "+format, args...)
	}
	var ops []map[string]json.RawMessage
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, bad("an array of ops such as {\"op\":\"add\",\"path\":\"/a\",\"value\":1}")
	}
	for i, op := range ops {
		var name, path string
		if json.Unmarshal(op["op"], &name) != nil || json.Unmarshal(op["path"], &path) != nil {
			return nil, bad("op %d needs \"op\" and \"path\" strings", i)
		}
		need := ""
		switch name {
		case "add", "replace", "test":
			need = "value"
		case "move", "copy":
			need = "from"
		case "remove":
		default:
			return nil, bad("op %d: unknown op %q", i, name)
		}
		if need != "" && op[need] == nil {
			return nil, bad("op %d (%s) needs %q", i, name, need)
		}
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, bad("%v", err)
	}
	return p, nil
}
