package api

import "strings"

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
			return Errorf(CodeInvalidName, "name %q: byte %d (%q) is not allowed; use A-Z a-z 0-9 - _ . ~ / : @ !", name, i, name[i])
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
