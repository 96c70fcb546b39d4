package rules

import (
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
)

// The variables that expressions see. user is three qualified variables
// rather than one map, so that a misspelled user.field is a compile error.
const (
	varUserID     = "user.id"
	varUserData   = "user.data"
	varUserClaims = "user.claims"
	varData       = "data"
	varOldData    = "oldData"
	varName       = "name"
	varNow        = "now"
	varChanged    = "changed"
	fnRecord      = "record"
	varPrefix     = "_v_" // $x in an expression is the declared variable _v_x
)

// baseEnv is the environment shared by every expression; a pattern with
// $vars extends it with one string variable each. It is built once (a
// tenth of a millisecond) and is safe for concurrent use.
var baseEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(varUserID, cel.StringType),
		cel.Variable(varUserData, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varUserClaims, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varData, cel.DynType),
		cel.Variable(varOldData, cel.DynType),
		cel.Variable(varName, cel.StringType),
		cel.Variable(varNow, cel.TimestampType),
		cel.Variable(varChanged, cel.ListType(cel.StringType)),
		// record(name): bound per evaluation, so that its lookups go to the
		// caller's Records and are counted.
		cel.Function(fnRecord, cel.Overload("record_string", []*cel.Type{cel.StringType}, cel.DynType, cel.LateFunctionBinding())),
		cel.OptionalTypes(),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
	)
})

// rewriteVars rewrites every $name outside string literals into the
// declared variable _v_name, and returns where each insertion happened
// (offsets in the rewritten text, for mapping columns back).
func rewriteVars(src string) (string, []int) {
	if !strings.Contains(src, "$") {
		return src, nil
	}
	var b strings.Builder
	var at []int
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '"' || c == '\'':
			j := skipString(src, i)
			b.WriteString(src[i:j])
			i = j
		case c == '/' && strings.HasPrefix(src[i:], "//"): // a comment, to the end of its line
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			b.WriteString(src[i : i+j])
			i += j
		case c == '$' && i+1 < len(src) && identStart(src[i+1]):
			at = append(at, b.Len())
			b.WriteString(varPrefix)
			i++
		case identStart(c):
			// A whole identifier, so that r"..." and b'...' prefixes stay
			// with their literal and a '$' never follows a letter.
			j := i
			for j < len(src) && (identStart(src[j]) || '0' <= src[j] && src[j] <= '9') {
				j++
			}
			if j < len(src) && (src[j] == '"' || src[j] == '\'') && isStringPrefix(src[i:j]) {
				k := skipString(src, j)
				if strings.ContainsAny(src[i:j], "rR") {
					k = skipRaw(src, j)
				}
				b.WriteString(src[i:k])
				i = k
				continue
			}
			b.WriteString(src[i:j])
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), at
}

func identStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isStringPrefix(p string) bool {
	switch strings.ToLower(p) {
	case "r", "b", "rb", "br":
		return true
	}
	return false
}

// skipString returns the offset just past the (possibly triple-quoted)
// string literal that starts at i, honouring backslash escapes; an
// unterminated literal runs to the end (the parser reports it).
func skipString(s string, i int) int { return skipQuoted(s, i, true) }

// skipRaw is skipString for raw literals, where a backslash escapes nothing.
func skipRaw(s string, i int) int { return skipQuoted(s, i, false) }

func skipQuoted(s string, i int, escapes bool) int {
	q := s[i : i+1]
	if strings.HasPrefix(s[i:], q+q+q) {
		q = q + q + q
	}
	for j := i + len(q); j < len(s); j++ {
		if escapes && s[j] == '\\' {
			j++
			continue
		}
		if strings.HasPrefix(s[j:], q) {
			return j + len(q)
		}
	}
	return len(s)
}

// unrewrite maps the rewritten expression's identifiers back to $name in
// a message.
func unrewrite(msg string) string {
	return strings.ReplaceAll(msg, varPrefix, "$")
}

// originalColumn maps a 0-based column of the rewritten line that starts at
// lineStart back to the expression as written.
func originalColumn(col, lineStart int, at []int) int {
	shift := 0
	for _, a := range at {
		if a >= lineStart && a < lineStart+col {
			shift += len(varPrefix) - 1
		}
	}
	return col - shift
}

// compiled is one expression, checked and planned.
type compiled struct {
	prg      cel.Program // under the cost limit
	fast     cel.Program // without it, for inputs up to bound (nil: none)
	bound    uint64      // see sizeBound
	partial  cel.Program // partial evaluation with user.* unknown, for shared (nil: not shareable)
	usesData bool        // reads data, oldData, changed, now or record()
	usesRec  bool        // calls record()
	usesNow  bool        // reads now
	usesUser bool        // reads user.id, user.data or user.claims
	usesVars bool        // reads a variable of the pattern
	bounded  bool        // no comprehension and no record(): runs each node at most once
}

// compileExpr compiles src in env; errs are the reasons, each with the
// expression's line (1-based) where the checker gave one.
func compileExpr(env *cel.Env, src string, costLimit uint64) (compiled, []exprError) {
	rw, at := rewriteVars(src)
	ast, iss := env.Compile(rw)
	if iss != nil && iss.Err() != nil {
		var errs []exprError
		for _, e := range iss.Errors() {
			line, col := max(e.Location.Line(), 1), max(e.Location.Column(), 0)
			lineStart := 0
			for n, k := 1, 0; n < line && k < len(rw); k++ {
				if rw[k] == '\n' {
					n++
					lineStart = k + 1
				}
			}
			errs = append(errs, exprError{line: line, msg: fmt.Sprintf("%s (column %d)", unrewrite(e.Message), originalColumn(col, lineStart, at)+1)})
		}
		return compiled{}, errs
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return compiled{}, []exprError{{line: 1, msg: fmt.Sprintf("the expression returns %s, not a bool", t)}}
	}
	prg, err := env.Program(ast,
		cel.CostLimit(costLimit),
		cel.InterruptCheckFrequency(64),
	)
	if err != nil {
		return compiled{}, []exprError{{line: 1, msg: unrewrite(err.Error())}}
	}
	c := compiled{prg: prg}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		switch ref.Name {
		case varData, varOldData, varChanged:
			c.usesData = true
		case varNow:
			c.usesData, c.usesNow = true, true
		case varUserID, varUserData, varUserClaims:
			c.usesUser = true
		}
		if strings.HasPrefix(ref.Name, varPrefix) {
			c.usesVars = true
		}
		for _, o := range ref.OverloadIDs {
			if o == "record_string" {
				c.usesData, c.usesRec = true, true
			}
		}
	}
	loops := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))
	c.bounded = len(loops) == 0 && !c.usesRec
	if err := c.plan(env, ast, costLimit); err != nil {
		return compiled{}, []exprError{{line: 1, msg: unrewrite(err.Error())}}
	}
	return c, nil
}

// plan adds the programs that make evaluations cheaper: without the cost
// tracker where it cannot stop anything (see sizeBound), and the partial
// evaluation of expressions on the data that one delivery's subscribers
// share (see Values.shared). An expression that looks records up or reads
// now gets neither.
func (c *compiled) plan(env *cel.Env, ast *cel.Ast, costLimit uint64) error {
	if c.usesRec {
		return nil
	}
	if c.bound = sizeBound(env, ast, costLimit); c.bound > 0 {
		fast, err := env.Program(ast, cel.InterruptCheckFrequency(64))
		if err != nil {
			return err
		}
		c.fast = fast
	}
	if c.usesData && !c.usesNow {
		partial, err := env.Program(ast,
			cel.CostLimit(costLimit),
			cel.InterruptCheckFrequency(64),
			cel.EvalOptions(cel.OptPartialEval),
		)
		if err != nil {
			return err
		}
		c.partial = partial
	}
	return nil
}

// program returns the program for one evaluation whose inputs are up to
// size: the fast one when the cost limit cannot matter.
func (c *compiled) program(size uint64) cel.Program {
	if c.fast != nil && size <= c.bound {
		return c.fast
	}
	return c.prg
}

type exprError struct {
	line int // 1-based line within the expression
	msg  string
}
