package api_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/switchboard-dev/switchboard/api"
)

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := api.Decode([]byte(s))
	if err != nil {
		t.Fatalf("Decode(%q) = %v", s, err)
	}
	return v
}

func mustPath(t *testing.T, s string) api.Path {
	t.Helper()
	p, err := api.ParsePath(s)
	if err != nil {
		t.Fatalf("ParsePath(%q) = %v", s, err)
	}
	return p
}

// canonical decodes s and encodes it again, so that documents can be
// compared as strings whatever their spacing and key order.
func canonical(t *testing.T, s string) string {
	t.Helper()
	return string(api.Encode(mustDecode(t, s)))
}

const lookupDoc = `{
	"position": {"x": 1, "y": 2.5},
	"items": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
	"m": {"0": "zero", "a/b": "slash", "m~n": "tilde", "": "empty", "-": "dash"},
	"n": null,
	"s": "str",
	"grid": [[1, 2], [3, 4]]
}`

func TestLookup(t *testing.T) {
	tests := []struct {
		path string
		want string // JSON of the value; "" when missing
	}{
		{"position.x", `1`},
		{"/position/x", `1`},
		{"position.y", `2.5`},
		{"position", `{"x":1,"y":2.5}`},
		{"items[2].name", `"c"`},
		{"items.1.name", `"b"`},
		{"/items/0/name", `"a"`},
		{"items[0]", `{"name":"a"}`},
		{"items", `[{"name":"a"},{"name":"b"},{"name":"c"}]`},
		{"grid[1][0]", `3`},
		{"/grid/0/1", `2`},
		{"m.0", `"zero"`},
		{"/m/0", `"zero"`},
		{"/m/a~1b", `"slash"`},
		{"/m/m~0n", `"tilde"`},
		{"/m/", `"empty"`},
		{"/m/-", `"dash"`},
		{"n", `null`},
		{"s", `"str"`},
		// Missing.
		{"nope", ""},
		{"position.z", ""},
		{"position.x.y", ""}, // into a number
		{"s.x", ""},          // into a string
		{"n.x", ""},          // into null
		{"items[3]", ""},
		{"items.3", ""},
		{"items[3].name", ""},
		{"items.x", ""},
		{"/items/-", ""},
		{"/items/01", ""},
		{"items[0].nope", ""},
		{"m[0]", ""}, // [n] never names an object key
		{"[0]", ""},  // the document is an object
		{"grid[2][0]", ""},
		{"/m/a/b", ""},
	}
	doc := mustDecode(t, lookupDoc)
	for _, tt := range tests {
		got, ok := api.Lookup(doc, mustPath(t, tt.path))
		if tt.want == "" {
			if ok {
				t.Errorf("Lookup(%q) = %s, true; want missing", tt.path, api.Encode(got))
			}
			continue
		}
		if !ok {
			t.Errorf("Lookup(%q) missing, want %s", tt.path, tt.want)
			continue
		}
		if enc := string(api.Encode(got)); enc != canonical(t, tt.want) {
			t.Errorf("Lookup(%q) = %s, want %s", tt.path, enc, tt.want)
		}
	}
	if got := string(api.Encode(doc)); got != canonical(t, lookupDoc) {
		t.Errorf("Lookup changed the document: %s", got)
	}
}

func TestLookupRoot(t *testing.T) {
	doc := mustDecode(t, `{"a":[1]}`)
	got, ok := api.Lookup(doc, api.Path{})
	if !ok || string(api.Encode(got)) != `{"a":[1]}` {
		t.Fatalf("Lookup(root) = %s, %v", api.Encode(got), ok)
	}
	got, ok = api.Lookup(nil, api.Path{})
	if !ok || got != nil {
		t.Fatalf("Lookup(nil, root) = %v, %v; want nil, true", got, ok)
	}
	if got, ok := api.Lookup(nil, mustPath(t, "a")); ok {
		t.Fatalf("Lookup(nil, a) = %v, true", got)
	}
}

func TestSetAt(t *testing.T) {
	tests := []struct {
		doc   string // "" for nil: a record that does not exist yet
		path  string
		value string
		want  string // "" when SetAt must fail with INVALID_PATH
	}{
		// Objects, with missing intermediate objects created.
		{"", "a", `1`, `{"a":1}`},
		{"", "a.b.c", `1`, `{"a":{"b":{"c":1}}}`},
		{"", "/a/b/c", `1`, `{"a":{"b":{"c":1}}}`},
		{"", "/a/0", `1`, `{"a":{"0":1}}`}, // nothing to index: "0" is a key
		{"", "a.0", `1`, `{"a":{"0":1}}`},
		{"", "/", `1`, `{"":1}`},
		{"", "/a~1b/m~0n", `1`, `{"a/b":{"m~n":1}}`},
		{`{"a":{"x":1}}`, "a.b.c", `2`, `{"a":{"b":{"c":2},"x":1}}`},
		{`{"a":{"x":1}}`, "/a/b", `[1,2]`, `{"a":{"b":[1,2],"x":1}}`},
		{`{"a":1}`, "a", `{"z":true}`, `{"a":{"z":true}}`},
		{`{"a":1,"b":2}`, "b", `null`, `{"a":1,"b":null}`},
		{`{"a":null}`, "a.b", `1`, `{"a":{"b":1}}`},
		{`{}`, "position.x", `12345678901234567890`, `{"position":{"x":12345678901234567890}}`},
		// Arrays.
		{`{"items":[1,2]}`, "items[0]", `9`, `{"items":[9,2]}`},
		{`{"items":[1,2]}`, "items.1", `9`, `{"items":[1,9]}`},
		{`{"items":[1,2]}`, "/items/1", `9`, `{"items":[1,9]}`},
		{`{"items":[{"n":1}]}`, "items[0].n", `2`, `{"items":[{"n":2}]}`},
		{`{"items":[{"n":1}]}`, "items[0].m.k", `2`, `{"items":[{"m":{"k":2},"n":1}]}`},
		{`{"grid":[[1],[2]]}`, "grid[1][0]", `3`, `{"grid":[[1],[3]]}`},
		{`[1,2]`, "[1]", `5`, `[1,5]`},
		// Appending: index == len, or the JSON Pointer "-".
		{`{"items":[1,2]}`, "items[2]", `3`, `{"items":[1,2,3]}`},
		{`{"items":[1,2]}`, "items.2", `3`, `{"items":[1,2,3]}`},
		{`{"items":[1,2]}`, "/items/2", `3`, `{"items":[1,2,3]}`},
		{`{"items":[1,2]}`, "/items/-", `3`, `{"items":[1,2,3]}`},
		{`{"items":[]}`, "items[0]", `"a"`, `{"items":["a"]}`},
		{`{"items":[]}`, "/items/-", `"a"`, `{"items":["a"]}`},
		{`{"items":[]}`, "/items/-/name", `"a"`, `{"items":[{"name":"a"}]}`},
		{`[1,2]`, "/-", `3`, `[1,2,3]`},
		{`[]`, "[0]", `{}`, `[{}]`},
		// "-" is an ordinary key in an object.
		{`{}`, "/-", `1`, `{"-":1}`},
		// Invalid.
		{`{"a":1}`, "a.b", `2`, ""},         // into a number
		{`{"a":1}`, "/a/b", `2`, ""},        // into a number
		{`{"a":{"b":1}}`, "a.b.c", `2`, ""}, // into a number, deeper
		{`{"a":"s"}`, "a.b", `2`, ""},       // into a string
		{`{"a":true}`, "/a/b", `2`, ""},     // into a boolean
		{`{"a":1}`, "a[0]", `2`, ""},        // index of a number
		{`{"a":{}}`, "a[0]", `2`, ""},       // [n] of an object
		{`{}`, "a[0]", `2`, ""},             // [n] of an array that does not exist
		{"", "a[0]", `2`, ""},
		{"", "[0]", `2`, ""},
		{`{"a":{}}`, "a.b[0]", `2`, ""},
		{`{"items":[1,2]}`, "items[3]", `3`, ""}, // past the end
		{`{"items":[1,2]}`, "/items/3", `3`, ""},
		{`{"items":[1,2]}`, "items.x", `3`, ""},
		{`{"items":[1,2]}`, "/items/01", `3`, ""},
		{`{"items":[1,2]}`, "items[0].x", `3`, ""}, // into a number in an array
		{`1`, "a", `2`, ""},
		{`"s"`, "/a", `2`, ""},
		{`[1]`, "a", `2`, ""},
	}
	for _, tt := range tests {
		var doc any
		if tt.doc != "" {
			doc = mustDecode(t, tt.doc)
		}
		p := mustPath(t, tt.path)
		v := mustDecode(t, tt.value)
		got, err := api.SetAt(doc, p, v)
		if tt.want == "" {
			if err == nil {
				t.Errorf("SetAt(%s, %q, %s) = %s, nil; want an INVALID_PATH error", tt.doc, tt.path, tt.value, api.Encode(got))
				continue
			}
			if code := api.ErrorCode(err); code != api.CodeInvalidPath {
				t.Errorf("SetAt(%s, %q): code %s, want %s", tt.doc, tt.path, code, api.CodeInvalidPath)
			}
			// A refused write leaves the document as it was.
			if tt.doc != "" {
				if enc := string(api.Encode(doc)); enc != canonical(t, tt.doc) {
					t.Errorf("SetAt(%s, %q) failed but changed the document to %s", tt.doc, tt.path, enc)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("SetAt(%s, %q, %s) = %v", tt.doc, tt.path, tt.value, err)
			continue
		}
		if enc := string(api.Encode(got)); enc != canonical(t, tt.want) {
			t.Errorf("SetAt(%s, %q, %s) = %s, want %s", tt.doc, tt.path, tt.value, enc, tt.want)
		}
		// What was set can be read back, except through "-", which names
		// no element once the array has grown.
		if strings.Contains(tt.path, "/-") {
			continue
		}
		if back, ok := api.Lookup(got, p); !ok || string(api.Encode(back)) != string(api.Encode(v)) {
			t.Errorf("after SetAt(%q, %s), Lookup = %s, %v", tt.path, tt.value, api.Encode(back), ok)
		}
	}
}

func TestSetAtRoot(t *testing.T) {
	doc := mustDecode(t, `{"a":1}`)
	got, err := api.SetAt(doc, api.Path{}, mustDecode(t, `[true]`))
	if err != nil || string(api.Encode(got)) != `[true]` {
		t.Fatalf("SetAt(root) = %s, %v; want [true], nil", api.Encode(got), err)
	}
}

func TestDeleteAt(t *testing.T) {
	tests := []struct {
		doc  string
		path string
		want string // "" when nothing is deleted
	}{
		// Object keys.
		{`{"a":1,"b":2}`, "a", `{"b":2}`},
		{`{"a":{"b":1,"c":2}}`, "a.b", `{"a":{"c":2}}`},
		{`{"a":{"b":1,"c":2}}`, "/a/c", `{"a":{"b":1}}`},
		{`{"a":{"b":1}}`, "a", `{}`},
		{`{"n":null}`, "n", `{}`},
		{`{"m":{"a/b":1,"m~n":2}}`, "/m/a~1b", `{"m":{"m~n":2}}`},
		{`{"m":{"a/b":1,"m~n":2}}`, "/m/m~0n", `{"m":{"a/b":1}}`},
		{`{"m":{"0":1}}`, "m.0", `{"m":{}}`},
		{`{"m":{"0":1}}`, "/m/0", `{"m":{}}`},
		{`{"-":1}`, "/-", `{}`},
		{`{"items":[{"n":1,"k":2}]}`, "items[0].n", `{"items":[{"k":2}]}`},
		// Array elements.
		{`{"items":[1,2,3]}`, "items[0]", `{"items":[2,3]}`},
		{`{"items":[1,2,3]}`, "items[1]", `{"items":[1,3]}`},
		{`{"items":[1,2,3]}`, "items[2]", `{"items":[1,2]}`},
		{`{"items":[1,2,3]}`, "items.1", `{"items":[1,3]}`},
		{`{"items":[1,2,3]}`, "/items/1", `{"items":[1,3]}`},
		{`{"items":[1]}`, "items[0]", `{"items":[]}`},
		{`{"grid":[[1,2],[3]]}`, "grid[0][1]", `{"grid":[[1],[3]]}`},
		{`{"grid":[[1,2],[3]]}`, "grid[1]", `{"grid":[[1,2]]}`},
		{`{"a":{"b":[1,2]}}`, "/a/b/0", `{"a":{"b":[2]}}`},
		{`[1,2,3]`, "[0]", `[2,3]`},
		{`[1,2,3]`, "/2", `[1,2]`},
		{`[[1,2]]`, "[0][0]", `[[2]]`},
		// Missing.
		{`{"a":1}`, "b", ""},
		{`{"a":1}`, "a.b", ""},
		{`{"a":"s"}`, "a.b", ""},
		{`{"a":null}`, "a.b", ""},
		{`{}`, "a.b.c", ""},
		{`{"items":[1]}`, "items[1]", ""},
		{`{"items":[1]}`, "items[5]", ""},
		{`{"items":[1]}`, "/items/-", ""},
		{`{"items":[1]}`, "items.x", ""},
		{`{"items":[1]}`, "/items/01", ""},
		{`{"m":{"0":1}}`, "m[0]", ""}, // [n] never names an object key
		{`[1,2]`, "a", ""},
		{`[1,2]`, "[2]", ""},
		{`1`, "a", ""},
		{`null`, "a", ""},
	}
	for _, tt := range tests {
		doc := mustDecode(t, tt.doc)
		got, ok := api.DeleteAt(doc, mustPath(t, tt.path))
		if tt.want == "" {
			if ok {
				t.Errorf("DeleteAt(%s, %q) = %s, true; want false", tt.doc, tt.path, api.Encode(got))
			}
			if enc := string(api.Encode(got)); enc != canonical(t, tt.doc) {
				t.Errorf("DeleteAt(%s, %q) returned %s, want the document unchanged", tt.doc, tt.path, enc)
			}
			if enc := string(api.Encode(doc)); enc != canonical(t, tt.doc) {
				t.Errorf("DeleteAt(%s, %q) changed the document to %s", tt.doc, tt.path, enc)
			}
			continue
		}
		if !ok {
			t.Errorf("DeleteAt(%s, %q) = false, want true", tt.doc, tt.path)
			continue
		}
		if enc := string(api.Encode(got)); enc != canonical(t, tt.want) {
			t.Errorf("DeleteAt(%s, %q) = %s, want %s", tt.doc, tt.path, enc, tt.want)
		}
	}
}

func TestDeleteAtNilAndRoot(t *testing.T) {
	if got, ok := api.DeleteAt(nil, mustPath(t, "a")); ok || got != nil {
		t.Errorf("DeleteAt(nil, a) = %v, %v; want nil, false", got, ok)
	}
	doc := mustDecode(t, `{"a":1}`)
	got, ok := api.DeleteAt(doc, api.Path{})
	if ok || string(api.Encode(got)) != `{"a":1}` {
		t.Errorf("DeleteAt(root) = %s, %v; want the document unchanged, false", api.Encode(got), ok)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{`1`, `1`},
		{` 1 `, `1`},
		{"\n\t\r 1\r\n\t ", `1`},
		{`null`, `null`},
		{` true `, `true`},
		{`"s"`, `"s"`},
		{` [ ] `, `[]`},
		{"\n{\"b\" : [1, 2],\n \"a\": {}}\n", `{"a":{},"b":[1,2]}`},
		{`"<>&"`, `"<>&"`},
		{`"\u003c\u003e\u0026"`, `"<>&"`},
		{`"é\u00e9"`, `"éé"`},
	}
	for _, tt := range tests {
		v, err := api.Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%q) = %v", tt.in, err)
			continue
		}
		if got := string(api.Encode(v)); got != tt.want {
			t.Errorf("Encode(Decode(%q)) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestDecodeInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"   ",
		"\n",
		"1 }",
		"1}",
		"{} {}",
		"{}{}",
		"1 2",
		"[1] ]",
		`{"a":1}x`,
		`"a" "b"`,
		"null null",
		"{",
		"[1,]",
		`{"a":}`,
		`{"a" 1}`,
		`{a:1}`,
		"nul",
		"tru",
		`"a`,
		`'a'`,
		`"\x"`,
		"NaN",
		"Infinity",
		"01",
		"-",
		"1.",
		".5",
		"+1",
		"0x10",
		"\f1",
		"1\f",
		"1\v",
		"1\u00a0",
		"\u00a01",
		"1\u0085",
		"1\u2028",
		"\ufeff1",
		"1\x00",
	} {
		v, err := api.Decode([]byte(in))
		if err == nil {
			t.Errorf("Decode(%q) = %s, nil; want an INVALID_JSON error", in, api.Encode(v))
			continue
		}
		if code := api.ErrorCode(err); code != api.CodeInvalidJSON {
			t.Errorf("Decode(%q): code %s, want %s", in, code, api.CodeInvalidJSON)
		}
		if _, err := api.Compact([]byte(in)); api.ErrorCode(err) != api.CodeInvalidJSON {
			t.Errorf("Compact(%q) = %v, want an INVALID_JSON error", in, err)
		}
	}
}

func TestNumbersStayExact(t *testing.T) {
	for _, n := range []string{
		"12345678901234567890",
		"-12345678901234567890",
		"9007199254740993",
		"0.1",
		"1.0000000000000000000001",
		"1.10",
		"1e400",
		"1E+2",
		"-0",
		"0",
		"123456789012345678901234567890.123456789",
	} {
		v := mustDecode(t, n)
		num, ok := v.(json.Number)
		if !ok {
			t.Errorf("Decode(%s) = %T, want json.Number", n, v)
			continue
		}
		if num.String() != n {
			t.Errorf("Decode(%s) = %s", n, num)
		}
		if got := string(api.Encode(v)); got != n {
			t.Errorf("Encode(Decode(%s)) = %s", n, got)
		}
		doc := mustDecode(t, `{"n":[`+n+`]}`)
		if got, want := string(api.Encode(doc)), `{"n":[`+n+`]}`; got != want {
			t.Errorf("Encode(Decode(%s)) = %s", want, got)
		}
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, `null`},
		{"<>&", `"<>&"`},
		{map[string]any{"<a>": "x&y"}, `{"<a>":"x&y"}`},
		{map[string]any{"b": json.Number("1"), "a": json.Number("2"), "c": []any{}}, `{"a":2,"b":1,"c":[]}`},
		{[]any{"x", true, nil, json.Number("12345678901234567890")}, `["x",true,null,12345678901234567890]`},
		{"line\nbreak\t\"q\"\\", `"line\nbreak\t\"q\"\\"`},
		{"\u2028", `"\u2028"`},
	}
	for _, tt := range tests {
		got := api.Encode(tt.in)
		if string(got) != tt.want {
			t.Errorf("Encode(%#v) = %s, want %s", tt.in, got, tt.want)
		}
		if bytes.HasSuffix(got, []byte("\n")) {
			t.Errorf("Encode(%#v) ends with a newline", tt.in)
		}
		if !json.Valid(got) {
			t.Errorf("Encode(%#v) = %s is not valid JSON", tt.in, got)
		}
	}
}

func TestCompact(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{` { "b" : [ 1 , 2 ] , "a" : "x y" } `, `{"b":[1,2],"a":"x y"}`}, // key order kept
		{"\n12345678901234567890\n", `12345678901234567890`},
		{` "<>&" `, `"<>&"`},
		{`[ ]`, `[]`},
	}
	for _, tt := range tests {
		got, err := api.Compact([]byte(tt.in))
		if err != nil {
			t.Errorf("Compact(%q) = %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("Compact(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// tokenDepth returns how deep the valid JSON raw nests, as encoding/json's
// tokenizer sees it.
func tokenDepth(raw []byte) int {
	dec := json.NewDecoder(bytes.NewReader(raw))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			deepest = max(deepest, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`1`, ` 1 `, `null`, `true`, `"s"`, `[]`, `{}`, `{"a":[1,{"b":null}],"c":"<>&"}`,
		`12345678901234567890`, `-0`, `1e400`, `1.10`, `"\u2028\ud800"`, "\"\xff\"",
		`{"a":1,"a":2}`, `[[[[[]]]]]`, "", "1 }", "{} {}", "1\f", "1\u00a0", `{"a":}`,
		`"\ud83d\ude00"`, `"\ude00"`, `"\ud83d"`, `"\ud83dx"`, `"\ud83d\n"`, `"\ud83d\ud83d"`, `"\\ud800"`,
		strings.Repeat("[", api.MaxDepth) + strings.Repeat("]", api.MaxDepth),
		strings.Repeat("[", api.MaxDepth+1) + strings.Repeat("]", api.MaxDepth+1),
		strings.Repeat(`{"a":`, api.MaxDepth+1) + "1" + strings.Repeat("}", api.MaxDepth+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := api.Decode(raw)
		// Decode accepts exactly one JSON value with optional JSON white
		// space, in UTF-8, without unpaired surrogate escapes, at most
		// MaxDepth deep: RFC 7493 bar its ban on duplicate names, as the
		// JSON v2 prototype checks it.
		valid := json.Valid(raw) && jsontext.Value(raw).IsValid(jsontext.AllowDuplicateNames(true)) &&
			tokenDepth(raw) <= api.MaxDepth
		if (err == nil) != valid {
			t.Fatalf("Decode(%q) = %v, but valid = %v", raw, err, valid)
		}
		if err != nil {
			if code := api.ErrorCode(err); code != api.CodeInvalidJSON {
				t.Fatalf("Decode(%q): code %s, want %s", raw, code, api.CodeInvalidJSON)
			}
			return
		}
		enc := api.Encode(v)
		v2, err := api.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v; Encode gave %s", raw, err, enc)
		}
		if enc2 := api.Encode(v2); !bytes.Equal(enc, enc2) {
			t.Fatalf("Encode is not stable for %q: %s then %s", raw, enc, enc2)
		}
		c, err := api.Compact(raw)
		if err != nil {
			t.Fatalf("Compact(%q) = %v after Decode accepted it", raw, err)
		}
		v3, err := api.Decode(c)
		if err != nil {
			t.Fatalf("Decode(Compact(%q)) = %v", raw, err)
		}
		if enc3 := api.Encode(v3); !bytes.Equal(enc, enc3) {
			t.Fatalf("Compact changed the value of %q: %s, want %s", raw, enc3, enc)
		}
	})
}
