package rules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// TestCompileErrors: every kind of mistake is reported with the file, the
// line and a reason.
func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		want      string
	}{
		{"broken YAML", "record:\n  a:\n    read: true\n  b: c: d\n", 4, "YAML: mapping values are not allowed"},
		{"tab indentation", "record:\n\t\"a\": {read: true}\n", 2, "YAML"},
		{"not a mapping", "- record\n", 1, "mapping of sections"},
		{"unknown section", "record:\n  a: {read: true}\nrecords:\n  a: {read: true}\n", 3, `unknown section "records"`},
		{"section not a mapping", "event: true\n", 1, "section event is a mapping"},
		{"unknown action", "event:\n  \"chat/$room\":\n    publish: true\n    write: true\n", 4, `unknown action "write"`},
		{"presence write", "presence:\n  \"*\": {write: true}\n", 2, `unknown action "write"`},
		{"actions not a mapping", "rpc:\n  add: true\n", 2, "mapping of actions"},
		{"empty segment", "record:\n  a//b: {read: true}\n", 2, "empty segment"},
		{"star inside", "record:\n  a/*/b: {read: true}\n", 2, "last segment"},
		{"bad variable", "record:\n  a/$1: {read: true}\n", 2, "not a variable"},
		{"variable twice", "record:\n  a/$x/$x: {read: true}\n", 2, "twice"},
		{"bad literal", "record:\n  a/b%c: {read: true}\n", 2, "not allowed"},
		{"same shape", "record:\n  a/$x: {read: true}\n  a/$y: {write: true}\n", 3, `matches the same names as "a/$x"`},
		{"pattern twice", "record:\n  a: {read: true}\n  a: {write: true}\n", 3, "appears twice (first at line 2)"},
		{"action twice", "record:\n  a:\n    read: true\n    read: false\n", 4, "appears twice"},
		{"number", "record:\n  a:\n    read: 1\n", 3, "true, false or an expression"},
		{"null", "record:\n  a:\n    read:\n", 3, "true, false or an expression"},
		{"list", "record:\n  a:\n    read: [true]\n", 3, "true, false or an expression"},
		{"empty expression", "record:\n  a:\n    read: \"  \"\n", 3, "empty"},
		{"syntax", "record:\n  a:\n    read: \"user.id ==\"\n", 3, "Syntax error"},
		{"undeclared", "record:\n  a:\n    read: \"usr.id == 'x'\"\n", 3, "undeclared reference to 'usr.id' (did you mean 'user.id'?)"},
		{"user field", "record:\n  a:\n    read: \"user.name == 'x'\"\n", 3, "undeclared reference"},
		{"var not in pattern", "record:\n  \"a/$x\":\n    read: \"user.id == $y\"\n", 3, "undeclared reference to '$y' (did you mean '$x'?) (column 12)"},
		{"not bool", "record:\n  a:\n    read: \"1 + 2\"\n", 3, "returns int, not a bool"},
		{"string", "record:\n  a:\n    read: \"name\"\n", 3, "returns string, not a bool"},
		{"wrong types", "record:\n  a:\n    read: \"name > 1\"\n", 3, "no matching overload"},
		{"record arity", "record:\n  a:\n    read: \"record('a', 'b') == null\"\n", 3, "record"},
		{"block scalar line", "record:\n  a:\n    read: |\n      user.id != '' &&\n      nope\n", 5, "undeclared reference to 'nope'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := rules.Compile("perm.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("compiled:\n%s", tt.src)
			}
			if r != nil {
				t.Error("rules returned with an error")
			}
			var errs rules.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v, want rules.Errors", err, err)
			}
			e := errs[0]
			prefix := fmt.Sprintf("perm.yaml:%d: ", tt.line)
			if e.File != "perm.yaml" || e.Line != tt.line || !strings.HasPrefix(e.Error(), prefix) || !strings.Contains(e.Msg, tt.want) {
				t.Errorf("%q, want %q...%q", e.Error(), prefix, tt.want)
			}
		})
	}
}

// TestCompileReportsEveryError: one mistake does not hide the next.
func TestCompileReportsEveryError(t *testing.T) {
	src := `
record:
  "a/$x":
    read: "$y == ''"
    create: "1"
    bogus: true
  "a//b": {read: true}
sections: {}
event:
  "e":
    publish: "data.x >"
`
	_, err := rules.Compile("perm.yaml", []byte(src))
	var errs rules.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("%v", err)
	}
	var lines []int
	for _, e := range errs {
		lines = append(lines, e.Line)
	}
	if fmt.Sprint(lines) != "[4 5 6 7 8 11]" {
		t.Errorf("lines %v, want [4 5 6 7 8 11]:\n%v", lines, err)
	}
	if got := strings.Count(err.Error(), "\n") + 1; got != len(errs) {
		t.Errorf("Error() has %d lines for %d errors", got, len(errs))
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, src := range []string{
		"",
		"# nothing\n",
		"record:\n",
		"record: {}\nevent: {}\nrpc: {}\npresence: {}\n",
		// A '$' in a string literal is text, not a variable.
		"record:\n  a:\n    read: \"name != '$x' && name != \\\"$y\\\" && name != r'$z' && name != '''$w'''\"\n",
		"record:\n  a:\n    read: \"name != 'it\\\\'s $x' // a comment with ' and $y\\n      || true\"\n",
		// A result of type dyn is checked when evaluated.
		"record:\n  a:\n    read: \"data.ok\"\n",
		"record:\n  a:\n    read: \"data.?x.orValue(0) > 1\"\n",
		"record:\n  a:\n    read: \"name.lowerAscii().startsWith('a')\"\n",
		"record:\n  \"a/$x\":\n    read: \"record('users/' + $x).admin == true\"\n",
		"presence:\n  \"*\": {read: True}\n",
		"rpc:\n  add-two:\n    provide: \"user.data.role == 'backend'\"\n    request: true\n",
	} {
		if _, err := rules.Compile("perm.yaml", []byte(src)); err != nil {
			t.Errorf("%v\n%s", err, src)
		}
	}
}

// FuzzCompile: no file and no expression makes Compile (or, for an
// expression that compiles, Decide) panic or hang; problems are Errors.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(auctionRules), "user.id == $x && data.price > oldData.price")
	f.Add([]byte("record:\n  \"a/$x\":\n    read: \"record('b/' + $x) == null && changed.size() > 0\"\n"), "record('b/' + $x).?y.orValue(1) == 1")
	f.Add([]byte("record:\n  a:\n    read: |\n      user.id != '' &&\n      $nope\n"), "[1, 2].all(i, i in data.list) || 'x$y'.startsWith(r'$')")
	f.Add([]byte("x: &a {b: *a}\n"), "now > timestamp(data.when) && name.matches('^a/.*')")
	f.Add([]byte("event:\n  \"*\":\n    publish: \"'$x' + r\\\"$y\\\" == ''\"\n"), "user.claims.exp > 3 && changed == ['a'] // '")
	f.Fuzz(func(t *testing.T, src []byte, expr string) {
		r, err := rules.Compile("f.yaml", src)
		checkCompiled(t, r, err)
		quoted, _ := json.Marshal(expr) // a JSON string is a YAML one
		r, err = rules.Compile("f.yaml", []byte("record:\n  \"a/$x\":\n    write: "+string(quoted)+"\n"))
		checkCompiled(t, r, err)
		if r != nil {
			recs := &records{data: map[string]string{"b/b": `{"y":2}`}}
			r.Decide(context.Background(), rules.Query{Section: "record", Action: "write", Name: "a/b",
				User: api.User{ID: "u", Data: map[string]any{"n": 1.0}, Claims: map[string]any{"exp": 4.0}},
				Data: json.RawMessage(`{"a":1,"list":[1,2],"when":"2020-01-01T00:00:00Z"}`), OldData: json.RawMessage(`{"a":2}`)}, recs)
		}
	})
}

func checkCompiled(t *testing.T, r *rules.Rules, err error) {
	t.Helper()
	if (r == nil) == (err == nil) {
		t.Fatalf("rules %v and error %v", r != nil, err)
	}
	if err != nil {
		var errs rules.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %v", err, err)
		}
		for _, e := range errs {
			if e.File != "f.yaml" || e.Msg == "" || e.Line < 0 {
				t.Fatalf("error %+v", e)
			}
		}
	}
}

// TestConcurrentCompile: files compile concurrently (a reload while a
// check runs); the shared environment is only read. Run with -race.
func TestConcurrentCompile(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			src := fmt.Sprintf("record:\n  \"a/$x%d/$y\":\n    read: \"$x%d == $y\"\n", i, i)
			if _, err := rules.Compile("f.yaml", []byte(src)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
