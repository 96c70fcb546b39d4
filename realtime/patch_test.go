package realtime

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// TestPatchTargets: a merge patch applies to a record of any value, null
// included, as RFC 7396 says (a target that is not an object is {}); a
// JSON Patch keeps <, > and & as they were written.
func TestPatchTargets(t *testing.T) {
	for _, c := range []struct{ ct, doc, patch, want string }{
		{MergePatch, `null`, `{"a":1}`, `{"a":1}`},
		{MergePatch, `5`, `{"a":1}`, `{"a":1}`},
		{MergePatch, `[1]`, `{"a":1,"b":null}`, `{"a":1}`},
		{MergePatch, `{"a":1}`, `null`, `null`},
		{JSONPatch, `{"a":"<b>&"}`, `[{"op":"add","path":"/c","value":">"}]`, `{"a":"<b>&","c":">"}`},
	} {
		apply, err := patcher(c.ct, json.RawMessage(c.patch), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got, err := apply(json.RawMessage(c.doc))
		if err != nil || string(got) != c.want {
			t.Errorf("%s %s to %s = %s (%v), want %s", c.ct, c.patch, c.doc, got, err, c.want)
		}
	}
}

// FuzzPatch applies any patch, of either kind, to any document under a
// 4 KiB record bound: it fails with a code of the contract, or its result
// is valid JSON that a JSON Patch's copies cannot have grown past the
// bound (a copy-and-move pair doubles a document otherwise).
func FuzzPatch(f *testing.F) {
	const maxBytes = 4096
	bomb := []string{`{"op":"add","path":"/x","value":["xxxxxxxx"]}`}
	for range 12 {
		bomb = append(bomb, `{"op":"copy","from":"/x","path":"/y"}`, `{"op":"move","from":"/y","path":"/x/-"}`)
	}
	for _, c := range []struct{ doc, patch string }{
		{`{"a":1}`, `{"a":2,"b":null}`},
		{`{"a":1}`, `[{"op":"add","path":"/b","value":[1,2]}]`},
		{`{"a":[1,2]}`, `[{"op":"copy","from":"/a","path":"/b"},{"op":"move","from":"/b","path":"/a/-"}]`},
		{`{}`, "[" + strings.Join(bomb, ",") + "]"},
		{`{"a":{"b":1}}`, `[{"op":"test","path":"/a/b","value":1},{"op":"remove","path":"/a"}]`},
		{`[]`, `[{"op":"add","path":"/-","value":"\ud83d\ude00"}]`},
		{`{"a":1}`, `{"a":"\ud800"}`},
		{`{}`, `[{"op":"test","path":""}]`}, // crashed the library
		{`{"a":1}`, `[{"op":"copy","path":"/b"}]`},
	} {
		f.Add(c.doc, c.patch, true)
		f.Add(c.doc, c.patch, false)
	}
	f.Fuzz(func(t *testing.T, doc, patch string, jsonPatch bool) {
		if api.Validate([]byte(doc)) != nil {
			return // a stored record is always valid
		}
		ct := MergePatch
		if jsonPatch {
			ct = JSONPatch
		}
		apply, err := patcher(ct, json.RawMessage(patch), maxBytes)
		if err != nil {
			if code := api.ErrorCode(err); code != api.CodeInvalidJSON {
				t.Fatalf("patcher(%s, %q): code %s", ct, patch, code)
			}
			return
		}
		out, err := apply(json.RawMessage(doc))
		if err != nil {
			switch code := api.ErrorCode(err); code {
			case api.CodePatchFailed, api.CodePayloadTooLarge, api.CodeInvalidJSON:
			default:
				t.Fatalf("apply %q to %q: code %s (%v)", patch, doc, code, err)
			}
			return
		}
		if _, err := api.Decode(out); err != nil && api.CheckDepth(out, "result") == nil {
			t.Fatalf("apply %q to %q = %q: %v", patch, doc, out, err)
		}
		// Without copies a result grows by at most the patch's values;
		// copies add at most maxBytes more.
		if limit := len(doc) + 2*len(patch) + maxBytes; jsonPatch && len(out) > limit {
			t.Fatalf("apply %q to %q: %d bytes, over %d", patch, doc, len(out), limit)
		}
	})
}
