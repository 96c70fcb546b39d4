package api_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// key is a segment that names an object key which is not an array index.
func key(k string) api.Segment { return api.Segment{Key: k, Index: -1} }

// num is a segment written as a plain key that may also index an array.
func num(k string, n int) api.Segment { return api.Segment{Key: k, Index: n} }

// idx is a segment written as [n]: only an array index.
func idx(k string, n int) api.Segment { return api.Segment{Key: k, Index: n, Explicit: true} }

func TestParsePath(t *testing.T) {
	tests := []struct {
		path string
		want []api.Segment
	}{
		// Dot paths.
		{"a", []api.Segment{key("a")}},
		{"position.x", []api.Segment{key("position"), key("x")}},
		{"a.b.c", []api.Segment{key("a"), key("b"), key("c")}},
		{"items[2].name", []api.Segment{key("items"), idx("2", 2), key("name")}},
		{"items[0]", []api.Segment{key("items"), idx("0", 0)}},
		{"items[10]", []api.Segment{key("items"), idx("10", 10)}},
		{"items[123456789]", []api.Segment{key("items"), idx("123456789", 123456789)}},
		{"a[0][1]", []api.Segment{key("a"), idx("0", 0), idx("1", 1)}},
		{"a[0][1].b[2]", []api.Segment{key("a"), idx("0", 0), idx("1", 1), key("b"), idx("2", 2)}},
		{"[0]", []api.Segment{idx("0", 0)}},
		{"[3].a", []api.Segment{idx("3", 3), key("a")}},
		{"items.2", []api.Segment{key("items"), num("2", 2)}},
		{"items.2.name", []api.Segment{key("items"), num("2", 2), key("name")}},
		{"0", []api.Segment{num("0", 0)}},
		{"a.01", []api.Segment{key("a"), key("01")}}, // leading zero: a key, not an index
		{"a.-1", []api.Segment{key("a"), key("-1")}},
		{"a.+1", []api.Segment{key("a"), key("+1")}},
		{"a.-", []api.Segment{key("a"), key("-")}}, // "-" appends only in a JSON Pointer
		{"a/b.c", []api.Segment{key("a/b"), key("c")}},
		{"a b.c~d", []api.Segment{key("a b"), key("c~d")}},
		{"café.ü", []api.Segment{key("café"), key("ü")}},
		{strings.Repeat("a", api.MaxPathLen), []api.Segment{key(strings.Repeat("a", api.MaxPathLen))}},
		// JSON Pointers.
		{"/", []api.Segment{key("")}},
		{"/a", []api.Segment{key("a")}},
		{"/position/x", []api.Segment{key("position"), key("x")}},
		{"/items/2/name", []api.Segment{key("items"), num("2", 2), key("name")}},
		{"/items/0", []api.Segment{key("items"), num("0", 0)}},
		{"/items/01", []api.Segment{key("items"), key("01")}},
		{"/items/-", []api.Segment{key("items"), {Key: "-", Index: -1, Append: true}}},
		{"/-", []api.Segment{{Key: "-", Index: -1, Append: true}}},
		{"/a~1b", []api.Segment{key("a/b")}},
		{"/m~0n", []api.Segment{key("m~n")}},
		{"/~0~1", []api.Segment{key("~/")}},
		{"/~01", []api.Segment{key("~1")}}, // RFC 6901: ~01 is "~1", not "/"
		{"/~10", []api.Segment{key("/0")}},
		{"/~00", []api.Segment{key("~0")}},
		{"//", []api.Segment{key(""), key("")}},
		{"/a/", []api.Segment{key("a"), key("")}},
		{"/a.b[0]", []api.Segment{key("a.b[0]")}},
		{"/a b/ü", []api.Segment{key("a b"), key("ü")}},
		{"/" + strings.Repeat("a", api.MaxPathLen-1), []api.Segment{key(strings.Repeat("a", api.MaxPathLen-1))}},
	}
	for _, tt := range tests {
		p, err := api.ParsePath(tt.path)
		if err != nil {
			t.Errorf("ParsePath(%q) = %v, want nil", tt.path, err)
			continue
		}
		if got := p.Segments(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePath(%q).Segments() = %+v, want %+v", tt.path, got, tt.want)
		}
		if p.String() != tt.path {
			t.Errorf("ParsePath(%q).String() = %q", tt.path, p.String())
		}
		if p.IsRoot() {
			t.Errorf("ParsePath(%q).IsRoot() = true", tt.path)
		}
	}
}

func TestParsePathInvalid(t *testing.T) {
	for _, path := range []string{
		"",
		".",
		"..",
		"a..b",
		".a",
		"a.",
		"a.b.",
		"a[",
		"a[0",
		"a[x]",
		"a[01]",
		"a[00]",
		"a[-1]",
		"a[+1]",
		"a[ 1]",
		"a[1 ]",
		"a[]",
		"a[1.5]",
		"a[1234567890]",
		"a]b",
		"a]",
		"]",
		"[",
		"[]",
		"a.]",
		"a[0]b",
		"a[0].",
		"a[0]]",
		"a[[0]]",
		"/a~2",
		"/a~",
		"/~",
		"/a/~x/b",
		"/~~01",
		strings.Repeat("a", api.MaxPathLen+1),
		"/" + strings.Repeat("a", api.MaxPathLen),
		strings.Repeat("a.", 600) + "a",
	} {
		p, err := api.ParsePath(path)
		if err == nil {
			t.Errorf("ParsePath(%q) = %+v, nil; want an INVALID_PATH error", path, p.Segments())
			continue
		}
		if code := api.ErrorCode(err); code != api.CodeInvalidPath {
			t.Errorf("ParsePath(%q): code %s, want %s", path, code, api.CodeInvalidPath)
		}
		if !p.IsRoot() {
			t.Errorf("ParsePath(%q) returned segments %+v with its error", path, p.Segments())
		}
	}
}

func TestPathZeroIsRoot(t *testing.T) {
	var p api.Path
	if !p.IsRoot() || len(p.Segments()) != 0 || p.String() != "" {
		t.Fatalf("zero Path: IsRoot %v, Segments %+v, String %q", p.IsRoot(), p.Segments(), p.String())
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"position.x", "items[2].name", "a[0][1]", "[0]", "items.2", "a.-",
		"/position/x", "/items/-", "/a~1b", "/m~0n", "/~01", "/", "//",
		"", "a..b", ".a", "a.", "a[", "a[x]", "a[01]", "a]b", "/a~2", "a[0]b",
	} {
		f.Add(s)
	}
	const sentinel = "fuzz-sentinel"
	f.Fuzz(func(t *testing.T, s string) {
		p, err := api.ParsePath(s)
		if err != nil {
			if code := api.ErrorCode(err); code != api.CodeInvalidPath {
				t.Fatalf("ParsePath(%q): code %s, want %s", s, code, api.CodeInvalidPath)
			}
			return
		}
		if len(s) == 0 || len(s) > api.MaxPathLen {
			t.Fatalf("ParsePath accepted a path of %d bytes", len(s))
		}
		if p.String() != s || p.IsRoot() {
			t.Fatalf("ParsePath(%q): String %q, IsRoot %v", s, p.String(), p.IsRoot())
		}
		explicit := false
		for _, seg := range p.Segments() {
			if seg.Explicit && seg.Index < 0 {
				t.Fatalf("ParsePath(%q): explicit segment %+v without an index", s, seg)
			}
			if seg.Append && (s[0] != '/' || seg.Key != "-") {
				t.Fatalf("ParsePath(%q): unexpected append segment %+v", s, seg)
			}
			explicit = explicit || seg.Explicit
		}

		doc, err := api.SetAt(nil, p, sentinel)
		if err != nil {
			if code := api.ErrorCode(err); code != api.CodeInvalidPath {
				t.Fatalf("SetAt(nil, %q): code %s, want %s", s, code, api.CodeInvalidPath)
			}
			// Only an array index can fail where nothing exists yet.
			if !explicit {
				t.Fatalf("SetAt(nil, %q) = %v, but the path has no [n]", s, err)
			}
			return
		}
		got, ok := api.Lookup(doc, p)
		if !ok || got != sentinel {
			t.Fatalf("SetAt(nil, %q) = %s; Lookup = %v, %v; want %q, true", s, api.Encode(doc), got, ok, sentinel)
		}
		doc, ok = api.DeleteAt(doc, p)
		if !ok {
			t.Fatalf("DeleteAt(%s, %q) = false after SetAt", api.Encode(doc), s)
		}
		if got, ok := api.Lookup(doc, p); ok {
			t.Fatalf("Lookup(%q) after DeleteAt = %v, true", s, got)
		}
	})
}
