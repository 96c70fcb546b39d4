package api

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest name of a record, event or RPC, in bytes.
const MaxNameLen = 256

// ValidateName checks a record, event or RPC name: 1-256 bytes of
// A-Z a-z 0-9 - _ . ~ / : @ !, no leading or trailing '/', no "//" and no
// "." or ".." segment. It returns an INVALID_NAME error that says what is wrong.
func ValidateName(name string) error {
	switch {
	case name == "":
		return Errorf(CodeInvalidName, "a name must not be empty")
	case len(name) > MaxNameLen:
		return Errorf(CodeInvalidName, "a name is at most %d bytes; this one has %d", MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return Errorf(CodeInvalidName, "name %q: byte %d (%s) is not allowed; use A-Z a-z 0-9 - _ . ~ / : @ !", name, i, badByte(name[i:]))
		}
	}
	switch {
	case name[0] == '/' || name[len(name)-1] == '/':
		return Errorf(CodeInvalidName, "name %q must not start or end with '/'", name)
	case strings.Contains(name, "//"):
		return Errorf(CodeInvalidName, "name %q must not contain '//'", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "." || seg == ".." {
			// No browser or curl can address it: both resolve dot segments
			// away before the request is sent.
			return Errorf(CodeInvalidName, "name %q must not contain a %q segment", name, seg)
		}
	}
	return nil
}

// badByte describes the byte that starts s, a byte a name may not hold,
// by its value and never as a character of Latin-1 (0xff is not "ÿ"): an
// ASCII character quoted, the character it starts and its bytes, or its
// value alone when it starts no UTF-8 character.
func badByte(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && n <= 1:
		return fmt.Sprintf(`\x%02x, not UTF-8`, s[0])
	case n == 1:
		return fmt.Sprintf("%q", r)
	}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `\x%02x`, s[i])
	}
	return fmt.Sprintf("%q, bytes %s", r, b.String())
}

// NamePrefix reports whether some name may start with p: whether each of
// its bytes is one that a name may hold.
func NamePrefix(p string) bool {
	for i := 0; i < len(p); i++ {
		if !nameByte(p[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.~/:@!", c) >= 0
}

// ValidatePattern checks a subscription pattern: a name, a prefix
// followed by "/*" that matches every name under that prefix, or "*" that
// matches every name. It returns the name or prefix (with its trailing
// '/'; "" for "*") and whether it is a prefix.
func ValidatePattern(p string) (string, bool, error) {
	if p == "*" {
		return "", true, nil
	}
	if prefix, ok := strings.CutSuffix(p, "/*"); ok {
		if err := ValidateName(prefix); err != nil {
			return "", false, err
		}
		return prefix + "/", true, nil
	}
	return p, false, ValidateName(p)
}
