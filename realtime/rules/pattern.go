package rules

import (
	"fmt"
	"slices"
	"strings"
)

// segKind is the kind of one pattern segment. Its order is specificity: a
// literal beats a $var, which beats a final *.
type segKind uint8

const (
	segStar segKind = iota // a final "*": one or more segments
	segVar                 // "$name": exactly one segment
	segLit                 // a literal: that segment exactly
)

type segment struct {
	kind segKind
	text string // the literal, or the variable's name without '$'
}

// Pattern is a parsed rules pattern: '/'-separated segments, each a
// literal name segment, a "$var" (exactly one segment) or, last only, a "*"
// (one or more segments). Its zero value matches nothing.
type Pattern struct {
	src  string
	segs []segment
	vars []string // the variables' names, in order
}

// ParsePattern parses a pattern and says what is wrong with a bad one.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("a pattern must not be empty")
	}
	parts := strings.Split(s, "/")
	p := Pattern{src: s, segs: make([]segment, len(parts))}
	seen := make(map[string]bool)
	for i, part := range parts {
		switch {
		case part == "*":
			if i != len(parts)-1 {
				return Pattern{}, fmt.Errorf("pattern %q: '*' may only be the last segment", s)
			}
			p.segs[i] = segment{kind: segStar}
		case strings.HasPrefix(part, "$"):
			v := part[1:]
			if !isIdent(v) {
				return Pattern{}, fmt.Errorf("pattern %q: segment %q is not a variable ($ followed by letters, digits or '_', not starting with a digit)", s, part)
			}
			if seen[v] {
				return Pattern{}, fmt.Errorf("pattern %q: variable $%s appears twice", s, v)
			}
			seen[v] = true
			p.vars = append(p.vars, v)
			p.segs[i] = segment{kind: segVar, text: v}
		default:
			if err := checkLiteral(part); err != nil {
				return Pattern{}, fmt.Errorf("pattern %q: %v", s, err)
			}
			p.segs[i] = segment{kind: segLit, text: part}
		}
	}
	return p, nil
}

func checkLiteral(seg string) error {
	switch seg {
	case "":
		return fmt.Errorf("empty segment (no leading, trailing or double '/')")
	case ".", "..":
		return fmt.Errorf("segment %q is not a name segment", seg)
	}
	for i := 0; i < len(seg); i++ {
		if !literalByte(seg[i]) {
			return fmt.Errorf("segment %q: %q is not allowed (a literal segment uses A-Z a-z 0-9 - _ . ~ : @ !; a variable is $name; '*' is a whole last segment)", seg, seg[i])
		}
	}
	return nil
}

func literalByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.~:@!", c) >= 0
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// Vars returns the names of the pattern's variables, without '$', in order.
func (p Pattern) Vars() []string { return slices.Clone(p.vars) }

// Match reports whether name matches the pattern as a whole. A $var or a
// '*' never matches an empty segment.
func (p Pattern) Match(name string) bool {
	return p.match(name, nil)
}

// match is Match that also appends the values of the pattern's variables,
// in order, to vals (when not nil).
func (p Pattern) match(name string, vals *[]string) bool {
	if len(p.segs) == 0 {
		return false
	}
	rest := name
	for i, s := range p.segs {
		if s.kind == segStar {
			// One or more non-empty segments: the rest, with no empty segment.
			return !hasEmptySegment(rest)
		}
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" {
			return false
		}
		switch s.kind {
		case segLit:
			if seg != s.text {
				return false
			}
		case segVar:
			if vals != nil {
				*vals = append(*vals, seg)
			}
		}
		last := i == len(p.segs)-1
		if last {
			return !more
		}
		if !more {
			return false
		}
		rest = tail
	}
	return false
}

func hasEmptySegment(s string) bool {
	return s == "" || s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//")
}

// compare orders patterns by specificity, most specific first: segment by
// segment from the left, a literal before a $var before a '*'. Among
// patterns that match one same name the order is exactly specificity; on
// other pairs it is an arbitrary but total order, so that a sorted list's
// first match is the most specific.
func compare(a, b Pattern) int {
	for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
		x, y := a.segs[i], b.segs[i]
		if x.kind != y.kind {
			return int(y.kind) - int(x.kind)
		}
		if x.kind == segLit && x.text != y.text {
			return strings.Compare(x.text, y.text)
		}
	}
	return len(a.segs) - len(b.segs)
}

// shape is the pattern with its variables' names erased: two patterns of
// one shape match the same names, and neither is more specific.
func (p Pattern) shape() string {
	var b strings.Builder
	for i, s := range p.segs {
		if i > 0 {
			b.WriteByte('/')
		}
		switch s.kind {
		case segStar:
			b.WriteByte('*')
		case segVar:
			b.WriteByte('$')
		default:
			b.WriteString(s.text)
		}
	}
	return b.String()
}
