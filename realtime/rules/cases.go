package rules

import (
	"context"
	stdjson "encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-dev/switchboard/api"
)

// Case is one case of a rules test file: a query, the records record()
// sees, and the expected answer.
type Case struct {
	Line    int // of the case in its file
	Query   Query
	Records MapRecords
	Want    bool // allow
}

// MapRecords is Records over a map of names to data, as a test case gives
// them. It is safe for concurrent use if not modified.
type MapRecords map[string]stdjson.RawMessage

// Record returns the named record's data, or false.
func (m MapRecords) Record(_ context.Context, name string) (stdjson.RawMessage, bool, error) {
	d, ok := m[name]
	return d, ok, nil
}

// Run decides the case's query with its records.
func (r *Rules) Run(ctx context.Context, c Case) Decision {
	return r.Decide(ctx, c.Query, c.Records)
}

// caseKeys are the fields of a case.
var caseKeys = []string{"section", "action", "name", "user", "data", "oldData", "records", "now", "want"}

// ParseCases parses a rules test file: a YAML list of cases, each
// {section, action, name, user: {id, data, claims}, data, oldData,
// records: {NAME: DATA}, now, want: allow|deny}. section may be left out
// when the action belongs to one section only; now (RFC 3339) defaults to
// the time of the run. The error, if any, is an Errors listing every
// problem found.
func ParseCases(file string, src []byte) ([]Case, error) {
	p := compiler{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line, msg := yamlError(err)
		return nil, Errors{{File: file, Line: line, Msg: msg}}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := deref(doc.Content[0])
	if root.Kind != yaml.SequenceNode {
		return nil, Errors{{File: file, Line: root.Line, Msg: "a rules test file is a list of cases"}}
	}
	var cases []Case
	for _, n := range root.Content {
		if c, ok := p.parseCase(deref(n)); ok {
			cases = append(cases, c)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return cases, nil
}

func (p *compiler) parseCase(n *yaml.Node) (Case, bool) {
	c := Case{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "a case is a mapping of %s", strings.Join(caseKeys, ", "))
		return c, false
	}
	before := len(p.errs)
	want := ""
	for _, kv := range p.pairs(n, "a case field") {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "section":
			c.Query.Section = p.str(k, v)
		case "action":
			c.Query.Action = p.str(k, v)
		case "name":
			c.Query.Name = p.str(k, v)
		case "want":
			want = p.str(k, v)
		case "now":
			if s := p.str(k, v); s != "" {
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					p.errorf(v.Line, "now: %v", err)
				}
				c.Query.Now = t
			}
		case "data":
			c.Query.Data = p.json(v)
		case "oldData":
			c.Query.OldData = p.json(v)
		case "user":
			c.Query.User = p.user(v)
		case "records":
			c.Records = p.records(v)
		default:
			p.errorf(k.Line, "unknown case field %q (the fields are %s)", k.Value, strings.Join(caseKeys, ", "))
		}
	}
	q := &c.Query
	if q.Section == "" {
		s, ok := SectionOf(q.Action)
		switch {
		case q.Action == "":
			p.errorf(n.Line, "a case needs an action")
		case !ok && len(sectionsOf(q.Action)) > 1:
			p.errorf(n.Line, "action %q needs a section (one of %s)", q.Action, strings.Join(sectionsOf(q.Action), ", "))
		case !ok:
			p.errorf(n.Line, "unknown action %q", q.Action)
		}
		q.Section = s
	} else if _, known := sections[q.Section]; !known {
		p.errorf(n.Line, "unknown section %q (the sections are %s)", q.Section, strings.Join(sectionOrder, ", "))
	} else if !slices.Contains(sections[q.Section], q.Action) {
		p.errorf(n.Line, "section %s has no action %q (its actions are %s)", q.Section, q.Action, strings.Join(sections[q.Section], ", "))
	}
	if q.Name == "" {
		p.errorf(n.Line, "a case needs a name")
	}
	switch want {
	case "allow", "deny":
		c.Want = want == "allow"
	default:
		p.errorf(n.Line, "want is allow or deny, not %q", want)
	}
	return c, len(p.errs) == before
}

func sectionsOf(action string) []string {
	var out []string
	for _, s := range sectionOrder {
		if slices.Contains(sections[s], action) {
			out = append(out, s)
		}
	}
	return out
}

func (p *compiler) str(k, v *yaml.Node) string {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.errorf(v.Line, "%s must be a string", k.Value)
		return ""
	}
	return v.Value
}

// json converts a YAML value to JSON (nil for null).
func (p *compiler) json(v *yaml.Node) stdjson.RawMessage {
	var x any
	if err := v.Decode(&x); err != nil {
		p.errorf(v.Line, "%v", err)
		return nil
	}
	if x == nil {
		return nil
	}
	b, err := stdjson.Marshal(x)
	if err != nil {
		p.errorf(v.Line, "not JSON: %v", err)
		return nil
	}
	return b
}

// object converts a YAML mapping to what a verified token's claims
// decode to (JSON numbers are float64).
func (p *compiler) object(v *yaml.Node, what string) map[string]any {
	raw := p.json(v)
	if raw == nil {
		return nil
	}
	var m map[string]any
	if err := stdjson.Unmarshal(raw, &m); err != nil {
		p.errorf(v.Line, "%s must be a mapping", what)
	}
	return m
}

func (p *compiler) user(v *yaml.Node) api.User {
	var u api.User
	if v.Kind != yaml.MappingNode {
		p.errorf(v.Line, "user is a mapping of id, data, claims")
		return u
	}
	for _, kv := range p.pairs(v, "a user field") {
		k, x := kv[0], kv[1]
		switch k.Value {
		case "id":
			u.ID = p.str(k, x)
		case "data":
			u.Data = p.object(x, "user.data")
		case "claims":
			u.Claims = p.object(x, "user.claims")
		default:
			p.errorf(k.Line, "unknown user field %q (the fields are id, data, claims)", k.Value)
		}
	}
	return u
}

func (p *compiler) records(v *yaml.Node) MapRecords {
	if v.Kind != yaml.MappingNode {
		p.errorf(v.Line, "records is a mapping of names to data")
		return nil
	}
	m := MapRecords{}
	for _, kv := range p.pairs(v, "a record name") {
		if d := p.json(kv[1]); d != nil {
			m[kv[0].Value] = d
		} else {
			p.errorf(kv[1].Line, "record %q: data must not be null (leave the record out instead)", kv[0].Value)
		}
	}
	return m
}

// String describes the case's query in one line, for reports.
func (c Case) String() string {
	q := c.Query
	who := "anonymous"
	if q.User.ID != "" {
		who = fmt.Sprintf("user %q", q.User.ID)
	}
	return fmt.Sprintf("%s %s %q as %s", q.Section, q.Action, q.Name, who)
}
