package api

import (
	"strconv"
	"strings"
)

// MaxPathLen is the longest path inside a record, in bytes.
const MaxPathLen = 1024

// Path is a parsed location inside a JSON document. The zero Path is the
// whole document.
type Path struct {
	raw  string
	segs []Segment
}

// Segment is one step of a Path: an object key or an array index. Key is
// always set; Index is >= 0 when the step may index an array (an explicit
// [n] in a dot path, or a numeric JSON Pointer token), and Append marks the
// JSON Pointer token "-" (one past the end of an array).
type Segment struct {
	Key      string
	Index    int
	Explicit bool // written as [n]: only an array index
	Append   bool
}

// String returns the path as it was written.
func (p Path) String() string { return p.raw }

// Segments returns the steps of the path.
func (p Path) Segments() []Segment { return p.segs }

// IsRoot reports whether the path is the whole document.
func (p Path) IsRoot() bool { return len(p.segs) == 0 }

// ParsePath parses a dot path such as "position.x" or "items[2].name", or a
// JSON Pointer (RFC 6901) when it starts with '/'. It returns an INVALID_PATH
// error that says what is wrong.
func ParsePath(s string) (Path, error) {
	switch {
	case s == "":
		return Path{}, Errorf(CodeInvalidPath, "a path must not be empty")
	case len(s) > MaxPathLen:
		return Path{}, Errorf(CodeInvalidPath, "a path is at most %d bytes", MaxPathLen)
	}
	var segs []Segment
	var err error
	if s[0] == '/' {
		segs, err = parsePointer(s)
	} else {
		segs, err = parseDotPath(s)
	}
	if err != nil {
		return Path{}, err
	}
	return Path{raw: s, segs: segs}, nil
}

func parsePointer(s string) ([]Segment, error) {
	var segs []Segment
	for _, tok := range strings.Split(s[1:], "/") {
		if strings.Contains(strings.NewReplacer("~0", "", "~1", "").Replace(tok), "~") {
			return nil, Errorf(CodeInvalidPath, "path %q: '~' must be followed by 0 or 1", s)
		}
		key := strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		seg := Segment{Key: key, Index: arrayIndex(key), Append: key == "-"}
		segs = append(segs, seg)
	}
	return segs, nil
}

// arrayIndex returns the array index a key denotes, or -1: a decimal
// number without leading zeros.
func arrayIndex(key string) int {
	if key == "" || len(key) > 9 || (len(key) > 1 && key[0] == '0') {
		return -1
	}
	n, err := strconv.Atoi(key)
	if err != nil || n < 0 || key[0] == '+' {
		return -1
	}
	return n
}

func parseDotPath(s string) ([]Segment, error) {
	bad := func(why string) ([]Segment, error) {
		return nil, Errorf(CodeInvalidPath, "path %q: %s", s, why)
	}
	var segs []Segment
	i := 0
	for i < len(s) {
		switch s[i] {
		case '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return bad("'[' without ']'")
			}
			n := arrayIndex(s[i+1 : i+end])
			if n < 0 {
				return bad("an index in [] must be a number without leading zeros")
			}
			segs = append(segs, Segment{Key: s[i+1 : i+end], Index: n, Explicit: true})
			i += end + 1
			if i < len(s) && s[i] != '.' && s[i] != '[' {
				return bad("']' must be followed by '.', '[' or the end")
			}
			if i < len(s) && s[i] == '.' {
				i++
				if i == len(s) {
					return bad("a path must not end with '.'")
				}
			}
		case '.', ']':
			return bad("empty key")
		default:
			end := strings.IndexAny(s[i:], ".[]")
			if end < 0 {
				end = len(s) - i
			}
			key := s[i : i+end]
			segs = append(segs, Segment{Key: key, Index: arrayIndex(key)})
			i += end
			if i < len(s) && s[i] == ']' {
				return bad("']' without '['")
			}
			if i < len(s) && s[i] == '.' {
				i++
				if i == len(s) {
					return bad("a path must not end with '.'")
				}
			}
		}
	}
	return segs, nil
}
