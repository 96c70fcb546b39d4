package api_test

import (
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

const nameBytes = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/:@!"

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		// The examples of API.md.
		{"driver/14", true},
		{"chat/lobby", true},
		{"add-two", true},
		// Every allowed byte.
		{"a", true},
		{"Z", true},
		{"0", true},
		{"a-b_c.d~e:f@g!h", true},
		{"a/b/c", true},
		{"user@example.com", true},
		{"urn:x:y", true},
		{"~", true},
		{"!", true},
		{"@", true},
		{":", true},
		{"-", true},
		{"_", true},
		// '...' is neither a '.' nor a '..' segment.
		{"...", true},
		{"a/.../b", true},
		{"a..b", true},
		{"..a", true},
		{"a..", true},
		{"a/..b", true},
		{"a/b..", true},
		// Length: 1 to 256 bytes.
		{"", false},
		{strings.Repeat("a", 256), true},
		{strings.Repeat("a", 257), false},
		{strings.Repeat("a", 1000), false},
		{strings.Repeat("ab/", 85) + "a", true}, // 256 bytes with slashes
		// Slashes.
		{"/", false},
		{"/a", false},
		{"a/", false},
		{"/a/", false},
		{"a//b", false},
		{"a///b", false},
		// '.' and '..' segments: browsers and curl resolve them away.
		{".", false},
		{"./a", false},
		{"a/.", false},
		{"a/./b", false},
		{"..", false},
		{"../a", false},
		{"a/..", false},
		{"a/../b", false},
		// Bytes that are not allowed.
		{"a b", false},
		{" a", false},
		{"a ", false},
		{"a%20b", false},
		{"a?b", false},
		{"a#b", false},
		{"a*", false},
		{"*", false},
		{"a\\b", false},
		{"a+b", false},
		{"a,b", false},
		{"a\"b", false},
		{"a'b", false},
		{"a<b", false},
		{"a=b", false},
		{"a&b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\tb", false},
		{"a\x7f", false},
		{"café", false},
		{"日本", false},
		{"a\xffb", false},
		{strings.Repeat("a", 255) + "é", false}, // 257 bytes, and non-ASCII
		{strings.Repeat("a", 254) + "é", false}, // 256 bytes, but non-ASCII
	}
	for _, tt := range tests {
		err := api.ValidateName(tt.name)
		if tt.valid {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ValidateName(%q) = nil, want an INVALID_NAME error", tt.name)
			continue
		}
		if code := api.ErrorCode(err); code != api.CodeInvalidName {
			t.Errorf("ValidateName(%q): code %s, want %s", tt.name, code, api.CodeInvalidName)
		}
		if !api.IsCode(err, api.CodeInvalidName) {
			t.Errorf("ValidateName(%q): IsCode(err, INVALID_NAME) = false", tt.name)
		}
	}
}

// TestValidateNameBytes checks every single byte value against the allowed set.
func TestValidateNameBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		name := "a" + string([]byte{byte(c)}) + "a"
		err := api.ValidateName(name)
		allowed := strings.IndexByte(nameBytes, byte(c)) >= 0
		if allowed && c != '/' && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
		if !allowed && err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error for byte %#x", name, c)
		}
		if err != nil && api.ErrorCode(err) != api.CodeInvalidName {
			t.Errorf("ValidateName(%q): code %s, want %s", name, api.ErrorCode(err), api.CodeInvalidName)
		}
	}
}

// TestNamePrefix: a prefix may start a name exactly when each of its
// bytes is one a name may hold.
func TestNamePrefix(t *testing.T) {
	for c := 0; c < 256; c++ {
		p := "a/" + string([]byte{byte(c)})
		if got, want := api.NamePrefix(p), strings.IndexByte(nameBytes, byte(c)) >= 0; got != want {
			t.Errorf("NamePrefix(%q) = %v, want %v", p, got, want)
		}
	}
	if !api.NamePrefix("") {
		t.Error(`NamePrefix("") = false: every name starts with ""`)
	}
}

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern    string
		want       string
		wantPrefix bool
		valid      bool
	}{
		{"chat/*", "chat/", true, true},
		{"chat", "chat", false, true},
		{"chat/lobby", "chat/lobby", false, true},
		{"a/b/c/*", "a/b/c/", true, true},
		{"driver/14", "driver/14", false, true},
		{"*", "", true, true},
		{"**", "", false, false},
		{"*x", "", false, false},
		{"/*", "", false, false},
		{"a//*", "", false, false},
		{"a/../*", "", false, false},
		{"../*", "", false, false},
		{"chat/*/x", "", false, false},
		{"chat*", "", false, false},
		{"chat/**", "", false, false},
		{"chat/", "", false, false},
		{"", "", false, false},
		{"a b/*", "", false, false},
		{strings.Repeat("a", 257) + "/*", "", false, false},
		{strings.Repeat("a", 254) + "/*", strings.Repeat("a", 254) + "/", true, true},
	}
	for _, tt := range tests {
		got, prefix, err := api.ValidatePattern(tt.pattern)
		if !tt.valid {
			if err == nil {
				t.Errorf("ValidatePattern(%q) = %q, %v, nil; want an INVALID_NAME error", tt.pattern, got, prefix)
			} else if code := api.ErrorCode(err); code != api.CodeInvalidName {
				t.Errorf("ValidatePattern(%q): code %s, want %s", tt.pattern, code, api.CodeInvalidName)
			}
			continue
		}
		if err != nil {
			t.Errorf("ValidatePattern(%q) = %v, want nil", tt.pattern, err)
			continue
		}
		if got != tt.want || prefix != tt.wantPrefix {
			t.Errorf("ValidatePattern(%q) = %q, %v; want %q, %v", tt.pattern, got, prefix, tt.want, tt.wantPrefix)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"driver/14", "chat/lobby", "add-two", "", "/", "a//b", "a/../b", "..", ".", "a/./b",
		"a b", "a%b", "a?b", "a#b", "café", strings.Repeat("a", 256), strings.Repeat("a", 257),
		"a/", "/a", "~:@!._-", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := api.ValidateName(name)
		if err != nil {
			if code := api.ErrorCode(err); code != api.CodeInvalidName {
				t.Fatalf("ValidateName(%q): code %s, want %s", name, code, api.CodeInvalidName)
			}
			return
		}
		if len(name) < 1 || len(name) > api.MaxNameLen {
			t.Fatalf("ValidateName(%q) accepted %d bytes", name, len(name))
		}
		for i := 0; i < len(name); i++ {
			if strings.IndexByte(nameBytes, name[i]) < 0 {
				t.Fatalf("ValidateName(%q) accepted byte %q", name, name[i])
			}
		}
		if name[0] == '/' || name[len(name)-1] == '/' || strings.Contains(name, "//") {
			t.Fatalf("ValidateName(%q) accepted a misplaced '/'", name)
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("ValidateName(%q) accepted a %q segment", name, seg)
			}
		}
		// A valid name is a valid exact pattern and, as a prefix, a valid prefix pattern.
		if got, prefix, err := api.ValidatePattern(name + "/*"); err != nil || !prefix || got != name+"/" {
			t.Fatalf("ValidatePattern(%q) = %q, %v, %v; want %q, true, nil", name+"/*", got, prefix, err, name+"/")
		}
	})
}

// TestValidateNameBadByte: the byte refused is shown by its value, never
// as the Latin-1 character of that value (mojibake such as 'ÿ' for 0xff).
func TestValidateNameBadByte(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"a\xffb", `byte 1 (\xff, not UTF-8)`},
		{"a\xc3", `byte 1 (\xc3, not UTF-8)`},
		{"café", `byte 3 ('é', bytes \xc3\xa9)`},
		{"a b", `byte 1 (' ')`},
		{"a\x00", `byte 1 ('\x00')`},
		{"x😀", `byte 1 ('😀', bytes \xf0\x9f\x98\x80)`},
	} {
		err := api.ValidateName(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.ContainsAny(err.Error(), "ÿÃ") {
			t.Errorf("ValidateName(%q) = %v; want it to say %s", c.name, err, c.want)
		}
	}
}
