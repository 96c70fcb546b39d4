package api

import (
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects that a value may
// have, in a body and in a record after a write. encoding/json refuses
// 10,000 levels: a record nested deeper could be stored but never sent.
const MaxDepth = 1000

// checkText checks what JSON syntax leaves open in raw, which must already
// be one valid JSON value: the text is UTF-8, no string escapes an unpaired
// surrogate ("\ud800": no character, and invalid UTF-8 once decoded), and
// arrays and objects nest at most MaxDepth deep. Go's decoder would replace
// the first two with U+FFFD without a word, so a value would not come back
// as it was sent.
func checkText(raw []byte) error { return checkTextOf(raw, "the body") }

// CheckDepth checks that a value this server encoded (a record after a
// write) nests at most MaxDepth deep; what names it in the error.
func CheckDepth(raw []byte, what string) error { return checkTextOf(raw, what) }

func checkTextOf(raw []byte, what string) error {
	if !utf8.Valid(raw) {
		return Errorf(CodeInvalidJSON, "%s is not valid UTF-8", what)
	}
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '[', '{':
			if depth++; depth > MaxDepth {
				return Errorf(CodeInvalidJSON, "%s nests arrays and objects more than %d levels deep", what, MaxDepth)
			}
		case ']', '}':
			depth--
		case '"':
			end, err := checkString(raw, i+1)
			if err != nil {
				return err
			}
			i = end
		}
	}
	return nil
}

// checkString scans the valid JSON string that starts at raw[i] (after its
// opening quote) and returns the index of its closing quote, or an error for
// an unpaired surrogate escape.
func checkString(raw []byte, i int) (int, error) {
	pendingHigh := false // the previous escape was a high surrogate
	for ; raw[i] != '"'; i++ {
		if raw[i] != '\\' {
			if pendingHigh {
				return 0, unpaired()
			}
			continue
		}
		i++ // the escaped byte
		if raw[i] != 'u' {
			if pendingHigh {
				return 0, unpaired()
			}
			continue
		}
		r := hex4(raw[i+1 : i+5])
		i += 4
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if pendingHigh {
				return 0, unpaired()
			}
			pendingHigh = true
		case r >= 0xDC00 && r < 0xE000:
			if !pendingHigh {
				return 0, unpaired()
			}
			pendingHigh = false
		case pendingHigh:
			return 0, unpaired()
		}
	}
	if pendingHigh {
		return 0, unpaired()
	}
	return i, nil
}

func unpaired() error {
	return Errorf(CodeInvalidJSON, `the body holds an unpaired surrogate escape such as "\ud800": not a character`)
}

// hex4 decodes four hex digits, which valid JSON guarantees.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			r = r<<4 | rune(c-'a'+10)
		}
	}
	return r
}
