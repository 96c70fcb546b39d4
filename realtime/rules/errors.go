package rules

import (
	"fmt"
	"strings"
)

// Error is one problem in a rules (or cases) file, at a line.
type Error struct {
	File string
	Line int // 1-based; 0 when the YAML parser gave no line
	Msg  string
}

// Error formats the problem as "FILE:LINE: reason".
func (e Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Errors is every problem found in a file, in the order of their lines.
type Errors []Error

// Error formats one problem a line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
