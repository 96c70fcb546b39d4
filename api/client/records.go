package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Option configures a Client made by NewClient.
type Option func(*Client)

// WithToken makes the client send "Authorization: Bearer <token>".
func WithToken(token string) Option { return func(c *Client) { c.Token = token } }

// WithHTTPClient makes the client send its requests with hc.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.HTTP = hc } }

// NewClient returns a Client of the server at baseURL, configured by opts.
func NewClient(baseURL string, opts ...Option) *Client {
	c := &Client{BaseURL: baseURL}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Record is a record as the server answers it: its data, or with a path
// the value at that path.
type Record struct {
	Name    string          `json:"name"`
	Version int64           `json:"version"`
	Path    string          `json:"path,omitempty"`
	Data    json.RawMessage `json:"data"`
}

// Decode decodes the record's data into v.
func (r *Record) Decode(v any) error { return json.Unmarshal(r.Data, v) }

// Written names a record and its version after a write or in a listing.
type Written struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// Cond holds a write to a state of the record; the zero Cond writes
// whatever the record's state (the last write wins).
type Cond struct {
	IfMatch  int64 // write only at this version (If-Match: "<v>")
	IfExists bool  // write only if the record exists (If-Match: *)
	IfAbsent bool  // create only: PUT fails if the record exists (If-None-Match: *)
}

// IfMatch writes only at version v; another version answers 412
// VERSION_CONFLICT (see IsConflict).
func IfMatch(v int64) Cond { return Cond{IfMatch: v} }

func (c Cond) header() http.Header {
	h := http.Header{}
	switch {
	case c.IfMatch > 0:
		h.Set("If-Match", `"`+strconv.FormatInt(c.IfMatch, 10)+`"`)
	case c.IfExists:
		h.Set("If-Match", "*")
	}
	if c.IfAbsent {
		h.Set("If-None-Match", "*")
	}
	return h
}

// Get returns the record name; a missing one is a 404 NOT_FOUND *Error
// (see IsNotFound).
func (c *Client) Get(ctx context.Context, name string) (*Record, error) {
	return c.record(ctx, http.MethodGet, name, nil, nil, nil)
}

// GetPath returns the value at path (a dot path such as "position.x" or a
// JSON Pointer) of the record name.
func (c *Client) GetPath(ctx context.Context, name, path string) (*Record, error) {
	return c.record(ctx, http.MethodGet, name, url.Values{"path": {path}}, nil, nil)
}

// Put replaces the record name with data (any value that encoding/json
// encodes; a json.RawMessage is sent as is), creating it if absent.
func (c *Client) Put(ctx context.Context, name string, data any, cond Cond) (*Record, error) {
	return c.write(ctx, http.MethodPut, name, nil, "application/json", data, cond)
}

// PutPath sets the value at path of the record name to data, creating the
// record and the missing objects on the way.
func (c *Client) PutPath(ctx context.Context, name, path string, data any, cond Cond) (*Record, error) {
	return c.write(ctx, http.MethodPut, name, url.Values{"path": {path}}, "application/json", data, cond)
}

// MergePatch applies an RFC 7396 merge patch to the record name.
func (c *Client) MergePatch(ctx context.Context, name string, patch any, cond Cond) (*Record, error) {
	return c.write(ctx, http.MethodPatch, name, nil, "application/merge-patch+json", patch, cond)
}

// PatchOp is one operation of an RFC 6902 JSON Patch.
type PatchOp struct {
	Op    string `json:"op"` // add, remove, replace, move, copy, test
	Path  string `json:"path"`
	From  string `json:"from,omitempty"`
	Value any    `json:"value,omitempty"`
}

// JSONPatch applies an RFC 6902 JSON Patch to the record name. A failing
// "test" op or a missing path is a 409 PATCH_FAILED and changes nothing.
func (c *Client) JSONPatch(ctx context.Context, name string, ops []PatchOp, cond Cond) (*Record, error) {
	return c.write(ctx, http.MethodPatch, name, nil, "application/json-patch+json", ops, cond)
}

// Delete deletes the record name.
func (c *Client) Delete(ctx context.Context, name string, cond Cond) error {
	resp, err := c.send(ctx, http.MethodDelete, "/records/"+escapeName(name), nil, cond.header(), nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// DeletePath removes the value at path from the record name.
func (c *Client) DeletePath(ctx context.Context, name, path string, cond Cond) (*Record, error) {
	return c.record(ctx, http.MethodDelete, name, url.Values{"path": {path}}, cond.header(), nil)
}

func (c *Client) write(ctx context.Context, method, name string, query url.Values, ctype string, body any, cond Cond) (*Record, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode the body of %s %s: %w", method, name, err)
	}
	h := cond.header()
	h.Set("Content-Type", ctype)
	return c.record(ctx, method, name, query, h, raw)
}

func (c *Client) record(ctx context.Context, method, name string, query url.Values, h http.Header, raw []byte) (*Record, error) {
	resp, err := c.send(ctx, method, "/records/"+escapeName(name), query, h, raw)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r Record
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode the answer of %s %s: %w", method, name, err)
	}
	return &r, nil
}

// Page is one page of a listing; Next is the cursor of the next page, ""
// after the last.
type Page struct {
	Records []Written `json:"records"`
	Next    string    `json:"next"`
}

// List returns up to limit (at most 1000; 0: the server's default) names
// and versions of the records whose name starts with prefix and comes
// after the cursor after, in name order.
func (c *Client) List(ctx context.Context, prefix string, limit int, after string) (*Page, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if after != "" {
		q.Set("after", after)
	}
	resp, err := c.do(ctx, http.MethodGet, "/records", q, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var p Page
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return nil, fmt.Errorf("decode a listing: %w", err)
	}
	return &p, nil
}

// All lists every record whose name starts with prefix, page after page.
// An error ends the sequence.
func (c *Client) All(ctx context.Context, prefix string) iter.Seq2[Written, error] {
	return func(yield func(Written, error) bool) {
		after := ""
		for {
			p, err := c.List(ctx, prefix, 1000, after)
			if err != nil {
				yield(Written{}, err)
				return
			}
			for _, r := range p.Records {
				if !yield(r, nil) {
					return
				}
			}
			if p.Next == "" || len(p.Records) == 0 {
				return
			}
			after = p.Next
		}
	}
}

// BatchOp is one op of an atomic batch: build it with BatchPut,
// BatchPutPath, BatchMergePatch, BatchJSONPatch or BatchDelete.
type BatchOp struct {
	Op          string `json:"op"`
	Name        string `json:"name"`
	Path        string `json:"path,omitempty"`
	Data        any    `json:"data,omitempty"`
	Patch       any    `json:"patch,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	IfMatch     int64  `json:"ifMatch,omitempty"`
}

// BatchPut replaces the record name with data; ifMatch > 0 holds it to
// that version.
func BatchPut(name string, data any, ifMatch int64) BatchOp {
	if data == nil {
		data = json.RawMessage("null")
	}
	return BatchOp{Op: "put", Name: name, Data: data, IfMatch: ifMatch}
}

// BatchPutPath sets the value at path of the record name.
func BatchPutPath(name, path string, data any, ifMatch int64) BatchOp {
	op := BatchPut(name, data, ifMatch)
	op.Path = path
	return op
}

// BatchMergePatch applies an RFC 7396 merge patch to the record name.
func BatchMergePatch(name string, patch any) BatchOp {
	return BatchOp{Op: "patch", Name: name, Patch: patch, ContentType: "application/merge-patch+json"}
}

// BatchJSONPatch applies an RFC 6902 JSON Patch to the record name.
func BatchJSONPatch(name string, ops []PatchOp) BatchOp {
	return BatchOp{Op: "patch", Name: name, Patch: ops, ContentType: "application/json-patch+json"}
}

// BatchDelete deletes the record name.
func BatchDelete(name string, ifMatch int64) BatchOp {
	return BatchOp{Op: "delete", Name: name, IfMatch: ifMatch}
}

// Batch applies every op or none, in order, and returns each op's record
// and version. A failing op is an *Error whose Index names it; nothing
// changed then.
func (c *Client) Batch(ctx context.Context, ops ...BatchOp) ([]Written, error) {
	resp, err := c.do(ctx, http.MethodPost, "/batch", nil, map[string]any{"ops": ops})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []Written `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode the answer of a batch: %w", err)
	}
	return out.Results, nil
}

// MaxUpdateTries bounds the tries of Update.
const MaxUpdateTries = 16

// ErrTooManyConflicts is Update's error when every try met a conflict.
var ErrTooManyConflicts = errors.New("client: too many write conflicts")

// Update reads the record name, computes its new value with f and writes
// it on the condition that the record is still at the version read (or
// still absent: cur is nil then). On a conflict it reads again and calls
// f again, up to MaxUpdateTries times with a short backoff. f returning
// nil data leaves the record as it is; an error of f ends Update with it.
func (c *Client) Update(ctx context.Context, name string, f func(cur json.RawMessage) (json.RawMessage, error)) (*Record, error) {
	wait := 5 * time.Millisecond
	for range MaxUpdateTries {
		cur, err := c.Get(ctx, name)
		var cond Cond
		var data json.RawMessage
		switch {
		case IsNotFound(err):
			cur, cond = nil, Cond{IfAbsent: true}
		case err != nil:
			return nil, err
		default:
			cond, data = IfMatch(cur.Version), cur.Data
		}
		next, err := f(data)
		if err != nil {
			return nil, err
		}
		if next == nil {
			return cur, nil // nil when the record is absent
		}
		rec, err := c.Put(ctx, name, next, cond)
		if !IsConflict(err) {
			return rec, err
		}
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
	return nil, fmt.Errorf("update %s: %w", name, ErrTooManyConflicts)
}

// Emit publishes an event name with data to every subscriber and returns
// its stream id, once every current subscriber will receive it.
func (c *Client) Emit(ctx context.Context, name string, data any) (string, error) {
	if data == nil {
		data = json.RawMessage("null")
	}
	resp, err := c.do(ctx, http.MethodPost, "/events/"+escapeName(name), nil, data)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("decode the answer of an event: %w", err)
	}
	return out.ID, nil
}
