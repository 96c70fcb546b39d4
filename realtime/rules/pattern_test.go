package rules_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// decider compiles patterns that each allow read, and returns the pattern
// that decides a read of a name ("" when none does).
func decider(t *testing.T, patterns ...string) func(name string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("record:\n")
	for _, p := range patterns {
		fmt.Fprintf(&b, "  %q: {read: true}\n", p)
	}
	r, err := rules.Compile("rules.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return func(name string) string {
		d := r.Decide(context.Background(), rules.Query{Section: "record", Action: "read", Name: name}, nil)
		if d.Allowed != (d.Pattern != "") {
			t.Errorf("%s: allowed %v by pattern %q", name, d.Allowed, d.Pattern)
		}
		return d.Pattern
	}
}

func TestSpecificity(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     string
	}{
		// A literal beats a $var, which beats a '*'.
		{[]string{"*", "a/*", "a/$x"}, "a/b", "a/$x"},
		{[]string{"*", "a/*", "a/$x", "a/b"}, "a/b", "a/b"},
		{[]string{"*", "a/*", "a/$x"}, "a/b/c", "a/*"},
		{[]string{"*", "a/*", "a/$x"}, "a", "*"},
		{[]string{"*", "a/*", "a/$x"}, "b/c", "*"},
		{[]string{"a/*", "a/$x"}, "b", ""},
		// Compared from the left: the first difference decides, not the
		// number of literal segments.
		{[]string{"a/b/*", "a/$x/c"}, "a/b/c", "a/b/*"},
		{[]string{"$x/b/c", "a/*"}, "a/b/c", "a/*"},
		{[]string{"$x/b", "$x/*"}, "a/b", "$x/b"},
		{[]string{"$x/$y", "$x/*"}, "a/b", "$x/$y"},
		{[]string{"$x/$y", "$x/*"}, "a/b/c", "$x/*"},
		{[]string{"$x/$y/$z", "a/*"}, "a/b/c", "a/*"},
		// Longer literal prefixes.
		{[]string{"a/*", "a/b/*", "a/b/c/*"}, "a/b/c/d", "a/b/c/*"},
		{[]string{"a/*", "a/b/*", "a/b/c/*"}, "a/b/c", "a/b/*"},
		{[]string{"a/*", "a/b/*", "a/b/c/*"}, "a/x/c/d", "a/*"},
		{[]string{"a/b/c", "a/b/*"}, "a/b/c", "a/b/c"},
		{[]string{"a/b/c", "a/b/*"}, "a/b/cd", "a/b/*"},
		// '*' is one or more whole segments; $var exactly one.
		{[]string{"*"}, "a/b/c/d", "*"},
		{[]string{"a/*"}, "a", ""},
		{[]string{"a/*"}, "ab/c", ""},
		{[]string{"$x"}, "a/b", ""},
		{[]string{"a/$x"}, "a/b/c", ""},
		{[]string{"a/$x/c"}, "a/b/c", "a/$x/c"},
		{[]string{"a"}, "a/b", ""},
		{[]string{"a/b"}, "a", ""},
		// API.md's example.
		{[]string{"auction/item/$sellerId/$itemId", "*"}, "auction/item/bob/1", "auction/item/$sellerId/$itemId"},
		{[]string{"auction/item/$sellerId/$itemId", "*"}, "auction/item/bob", "*"},
	}
	for _, tt := range tests {
		decide := decider(t, tt.patterns...)
		if got := decide(tt.name); got != tt.want {
			t.Errorf("patterns %q, name %q: decided by %q, want %q", tt.patterns, tt.name, got, tt.want)
		}
	}
}

// TestSpecificityPerAction: for each action, the most specific pattern
// that has a rule for that action decides.
func TestSpecificityPerAction(t *testing.T) {
	r, err := rules.Compile("rules.yaml", []byte(`
record:
  "*": {read: true}
  "a/$x": {write: true, read: false}
  "a/$x/b": {write: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		action, name, pattern string
		allowed               bool
	}{
		{"read", "a/b/b", "*", true},
		{"read", "a/b", "a/$x", false},
		{"write", "a/b/b", "a/$x/b", true},
		{"write", "a/b", "a/$x", true},
		{"write", "c", "", false},
		{"delete", "a/b", "", false},
	} {
		d := r.Decide(context.Background(), rules.Query{Section: "record", Action: tt.action, Name: tt.name}, nil)
		if d.Pattern != tt.pattern || d.Allowed != tt.allowed {
			t.Errorf("%s %s: %+v, want pattern %q allowed %v", tt.action, tt.name, d, tt.pattern, tt.allowed)
		}
	}
}

func TestParsePattern(t *testing.T) {
	for _, p := range []string{"a", "a/b", "*", "a/*", "$x", "a/$x/*", "x:y@z!~-_.w", "$_a1/$B"} {
		if _, err := rules.ParsePattern(p); err != nil {
			t.Errorf("ParsePattern(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "/a", "a/", "a//b", "*/a", "a/*/*", "$", "$1x", "$x-y", "a/$x/$x", "a b", "a*", "a/$x*", ".", "a/..", "é"} {
		if _, err := rules.ParsePattern(p); err == nil {
			t.Errorf("ParsePattern(%q) accepted", p)
		}
	}
}

// reference is the obvious matcher: the pattern as a regular expression.
func reference(pattern string) *regexp.Regexp {
	parts := strings.Split(pattern, "/")
	for i, s := range parts {
		switch {
		case s == "*":
			parts[i] = `[^/]+(?:/[^/]+)*`
		case strings.HasPrefix(s, "$"):
			parts[i] = `[^/]+`
		default:
			parts[i] = regexp.QuoteMeta(s)
		}
	}
	return regexp.MustCompile(`^` + strings.Join(parts, "/") + `$`)
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"a/$x", "a/b"}, {"a/*", "a/b/c"}, {"*", "a"}, {"a/*", "a"}, {"$x/b", "a//b"},
		{"a/b", "a/b/"}, {"*", "/a"}, {"$x/*", "a/b/"}, {"a/$y/c/*", "a/q/c/d/e"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		p, err := rules.ParsePattern(pattern)
		if err != nil {
			if p.Match(name) {
				t.Fatalf("the zero Pattern matched %q", name)
			}
			return
		}
		if got, want := p.Match(name), reference(pattern).MatchString(name); got != want {
			t.Fatalf("pattern %q, name %q: Match %v, reference %v", pattern, name, got, want)
		}
	})
}
