// Package rules is Switchboard's permission language: a YAML file of
// patterns and, per action, a rule (true, false or a CEL expression that
// returns a bool), compiled once and evaluated for every operation. It is
// pure: record() lookups go through the Records the caller passes in.
//
// A nil *Rules is the absence of a rules file and allows everything; a
// compiled file, even an empty one, denies every action no rule allows.
// A *Rules is immutable and safe for concurrent use.
package rules

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// Bounds of one evaluation.
const (
	// DefaultCostLimit is CEL's runtime cost allowed per evaluation: a few
	// thousand steps, such as one pass over a list of a few thousand items
	// (a few milliseconds at most; a typical rule costs under 20).
	DefaultCostLimit = 20_000
	// DefaultTimeout is the deadline of one evaluation, record() lookups
	// included.
	DefaultTimeout = 100 * time.Millisecond
	// MaxLookups is how many record() lookups one evaluation may make; the
	// next one denies.
	MaxLookups = 3
)

// The sections of a rules file and the actions each one has rules for.
var sections = map[string][]string{
	"record":   {"read", "create", "write", "delete", "listen"},
	"event":    {"publish", "subscribe", "listen"},
	"rpc":      {"provide", "request"},
	"presence": {"read"},
}

// sectionOrder is the order in which messages list the sections.
var sectionOrder = []string{"record", "event", "rpc", "presence"}

// Actions returns the actions a section has rules for, or nil for an
// unknown section.
func Actions(section string) []string { return slices.Clone(sections[section]) }

// SectionOf returns the only section that has action, or false when no
// section or more than one has it (read and listen).
func SectionOf(action string) (string, bool) {
	found := ""
	for _, s := range sectionOrder {
		if slices.Contains(sections[s], action) {
			if found != "" {
				return "", false
			}
			found = s
		}
	}
	return found, found != ""
}

// Option changes how a file is compiled.
type Option func(*options)

type options struct {
	costLimit uint64
	timeout   time.Duration
}

// WithCostLimit sets the runtime cost allowed per evaluation (default
// DefaultCostLimit).
func WithCostLimit(n uint64) Option { return func(o *options) { o.costLimit = n } }

// WithTimeout sets the deadline of one evaluation (default DefaultTimeout;
// 0: only the caller's context bounds it).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// Rules is a compiled rules file.
type Rules struct {
	timeout time.Duration
	rules   map[key][]*rule // most specific pattern first
}

type key struct{ section, action string }

// rule is one action's rule under one pattern.
type rule struct {
	key
	pattern  Pattern
	line     int    // of the rule's value
	text     string // as written: "true", "false" or the expression
	constant bool   // true or false, nothing to evaluate
	value    bool   // the constant's value
	expr     compiled
}

// Compile parses and compiles a rules file. file names it in messages. The
// error, if any, is an Errors listing every problem found.
func Compile(file string, src []byte, opts ...Option) (*Rules, error) {
	o := options{costLimit: DefaultCostLimit, timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	c := compiler{file: file, opts: o, envs: map[string]*cel.Env{}}
	r := &Rules{timeout: o.timeout, rules: map[key][]*rule{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line, msg := yamlError(err)
		return nil, Errors{{File: file, Line: line, Msg: msg}}
	}
	base, err := baseEnv()
	if err != nil {
		return nil, fmt.Errorf("rules environment: %w", err) // a bug, not the file's
	}
	c.envs[""] = base
	if len(doc.Content) > 0 {
		c.top(r, deref(doc.Content[0]))
	}
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b Error) int { return cmp.Compare(a.Line, b.Line) })
		return nil, c.errs
	}
	for k := range r.rules {
		slices.SortStableFunc(r.rules[k], func(a, b *rule) int { return compare(a.pattern, b.pattern) })
	}
	return r, nil
}

type compiler struct {
	file string
	opts options
	envs map[string]*cel.Env // by the pattern's variables, joined
	errs Errors
}

func (c *compiler) errorf(line int, format string, args ...any) {
	c.errs = append(c.errs, Error{File: c.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias != n {
		n = n.Alias
	}
	return n
}

// pairs returns a mapping's key/value pairs, reporting keys that are not
// strings or appear twice. what names the mapping's keys in messages.
func (c *compiler) pairs(n *yaml.Node, what string) [][2]*yaml.Node {
	seen := map[string]int{}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			c.errorf(k.Line, "%s must be a string", what)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.errorf(k.Line, "%s %q appears twice (first at line %d)", what, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

func (c *compiler) top(r *Rules, root *yaml.Node) {
	switch {
	case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
		return // an empty file: no rules
	case root.Kind != yaml.MappingNode:
		c.errorf(root.Line, "a rules file is a mapping of sections (%s)", strings.Join(sectionOrder, ", "))
		return
	}
	for _, p := range c.pairs(root, "a section") {
		k, v := p[0], p[1]
		if _, ok := sections[k.Value]; !ok {
			c.errorf(k.Line, "unknown section %q (the sections are %s)", k.Value, strings.Join(sectionOrder, ", "))
			continue
		}
		c.section(r, k.Value, v)
	}
}

func (c *compiler) section(r *Rules, section string, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(n.Line, "section %s is a mapping of patterns to rules", section)
		return
	}
	shapes := map[string]string{} // shape -> first pattern of that shape
	for _, p := range c.pairs(n, "a pattern") {
		k, v := p[0], p[1]
		pat, err := ParsePattern(k.Value)
		if err != nil {
			c.errorf(k.Line, "%s: %v", section, err)
			continue
		}
		if first, dup := shapes[pat.shape()]; dup {
			c.errorf(k.Line, "%s: pattern %q matches the same names as %q: merge them", section, k.Value, first)
			continue
		}
		shapes[pat.shape()] = k.Value
		c.pattern(r, section, pat, v)
	}
}

func (c *compiler) pattern(r *Rules, section string, pat Pattern, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.errorf(n.Line, "%s %q is a mapping of actions (%s) to rules", section, pat, strings.Join(sections[section], ", "))
		return
	}
	for _, p := range c.pairs(n, "an action") {
		k, v := p[0], p[1]
		if !slices.Contains(sections[section], k.Value) {
			c.errorf(k.Line, "%s %q: unknown action %q (a %s rule is one of %s)", section, pat, k.Value, section, strings.Join(sections[section], ", "))
			continue
		}
		ru := &rule{key: key{section, k.Value}, pattern: pat, line: v.Line, text: v.Value}
		if c.rule(ru, v) {
			r.rules[ru.key] = append(r.rules[ru.key], ru)
		}
	}
}

// rule compiles one rule's value into ru, reporting what is wrong.
func (c *compiler) rule(ru *rule, v *yaml.Node) bool {
	where := fmt.Sprintf("%s %q %s", ru.section, ru.pattern, ru.action)
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!bool":
		b, err := strconv.ParseBool(strings.ToLower(v.Value))
		if err != nil {
			c.errorf(v.Line, "%s: %q is not true or false", where, v.Value)
			return false
		}
		ru.constant, ru.value = true, b
		return true
	case v.Kind != yaml.ScalarNode || v.Tag != "!!str":
		c.errorf(v.Line, "%s: a rule is true, false or an expression in a string", where)
		return false
	case strings.TrimSpace(v.Value) == "":
		c.errorf(v.Line, "%s: the expression is empty", where)
		return false
	}
	env, err := c.env(ru.pattern)
	if err != nil {
		c.errorf(v.Line, "%s: %v", where, err)
		return false
	}
	expr, errs := compileExpr(env, v.Value, c.opts.costLimit)
	for _, e := range errs {
		line := v.Line
		if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			line += e.line // a block scalar starts on the line after its indicator
		}
		c.errorf(line, "%s: %s", where, e.msg)
	}
	ru.expr = expr
	return len(errs) == 0
}

// env returns the environment of a pattern's expressions: the base one and
// the pattern's variables.
func (c *compiler) env(p Pattern) (*cel.Env, error) {
	vars := p.Vars()
	id := strings.Join(vars, "/")
	if e, ok := c.envs[id]; ok {
		return e, nil
	}
	decls := make([]cel.EnvOption, len(vars))
	for i, v := range vars {
		decls[i] = cel.Variable(varPrefix+v, cel.StringType)
	}
	e, err := c.envs[""].Extend(decls...)
	if err != nil {
		return nil, err
	}
	c.envs[id] = e
	return e, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError splits a YAML parser's error into its line and reason.
func yamlError(err error) (int, string) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, "YAML: " + msg[len(m[0]):]
	}
	return 0, "YAML: " + strings.TrimPrefix(msg, "yaml: ")
}
