package rules_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// TestREADMEExample: the rules file and the test cases that the README's
// Permissions section shows compile, and every case gets what it wants.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Permissions\n")
	if !ok {
		t.Fatal("the README has no Permissions section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 2 {
		t.Fatalf("the Permissions section has %d yaml blocks, want the rules and the cases", len(blocks))
	}
	r, err := rules.Compile("README rules", []byte(blocks[0][1]))
	if err != nil {
		t.Fatal(err)
	}
	cases, err := rules.ParseCases("README cases", []byte(blocks[1][1]))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 5 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, c := range cases {
		if d := r.Run(t.Context(), c); d.Allowed != c.Want {
			t.Errorf("case at line %d: allowed %v, want %v (%s)", c.Line, d.Allowed, c.Want, d.Reason)
		}
	}
}
