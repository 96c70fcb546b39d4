package rules_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/realtime/rules"
)

func TestCases(t *testing.T) {
	r := compile(t, `record:
  "a/$x":
    read: "record('owners/' + $x).id == user.id && user.claims.level >= 2"
    write: "now < timestamp('2030-01-01T00:00:00Z') && user.data.n + 1.0 == 3.0"
presence:
  "*": {read: "user.id != ''"}
`)
	cases, err := rules.ParseCases("cases.yaml", []byte(`
- section: record
  action: read
  name: a/1
  user: {id: ann, claims: {level: 2}}
  records: {owners/1: {id: ann}}
  want: allow
- {section: record, action: read, name: a/2, user: {id: ann, claims: {level: 2}}, want: deny}
- action: write
  name: a/1
  user: {id: ann, data: {n: 2}}
  now: 2029-12-31T23:59:59Z
  data: {x: [1, {y: null}]}
  want: allow
- {action: write, name: a/1, user: {data: {n: 2}}, now: "2030-01-01T00:00:00Z", want: deny}
- {section: presence, action: read, name: ann, want: deny}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 5 || cases[0].Line != 2 || cases[2].Query.Section != "record" || string(cases[2].Query.Data) != `{"x":[1,{"y":null}]}` {
		t.Fatalf("%+v", cases)
	}
	if want := time.Date(2029, 12, 31, 23, 59, 59, 0, time.UTC); !cases[2].Query.Now.Equal(want) {
		t.Errorf("now %v", cases[2].Query.Now)
	}
	for _, c := range cases {
		if d := r.Run(context.Background(), c); d.Allowed != c.Want {
			t.Errorf("line %d %s: %+v", c.Line, c, d)
		}
	}
	if s := cases[4].String(); s != `presence read "ann" as anonymous` {
		t.Errorf("String: %s", s)
	}
}

func TestCasesErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"a: b\n", "cases.yaml:1: a rules test file is a list of cases"},
		{"- [1]\n", "cases.yaml:1: a case is a mapping"},
		{"- {action: read, name: x, want: allow}\n", `cases.yaml:1: action "read" needs a section (one of record, presence)`},
		{"- {action: listen, name: x, want: allow}\n", `needs a section (one of record, event)`},
		{"- {action: fly, name: x, want: allow}\n", `unknown action "fly"`},
		{"- {name: x, want: allow}\n", "needs an action"},
		{"- {section: rpc, action: write, name: x, want: allow}\n", `section rpc has no action "write"`},
		{"- {section: db, action: write, name: x, want: allow}\n", `unknown section "db"`},
		{"- {action: write, want: allow}\n", "needs a name"},
		{"- {action: write, name: x}\n", `want is allow or deny, not ""`},
		{"- {action: write, name: x, want: yes}\n", `not "yes"`},
		{"- {action: write, name: x, want: deny, wants: deny}\n", `unknown case field "wants"`},
		{"- {action: write, name: x, want: deny, user: {id: a, role: b}}\n", `unknown user field "role"`},
		{"- {action: write, name: x, want: deny, user: {data: [1]}}\n", "user.data must be a mapping"},
		{"- {action: write, name: x, want: deny, records: [a]}\n", "records is a mapping"},
		{"- {action: write, name: x, want: deny, now: tomorrow}\n", "now: parsing time"},
		{"- {action: write, name: x, want: deny, data: {1: a}}\n", "not JSON"},
		{"- {action: write\n", "cases.yaml:1: YAML"},
		{"- {action: write, name: x, want: deny}\n- {action: write, name: y, want: no}\n", "cases.yaml:2: "},
	} {
		_, err := rules.ParseCases("cases.yaml", []byte(tt.src))
		var errs rules.Errors
		if !errors.As(err, &errs) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.src, err, tt.want)
		}
	}
}
