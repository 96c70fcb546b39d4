package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/switchboard-dev/switchboard/realtime/rules"
)

const rulesUsage = `usage:
  switchboard rules check FILE         check a permissions file
  switchboard rules test FILE CASES    run rule test cases against it

check prints every problem as FILE:LINE: reason, or "FILE: ok".
CASES is a YAML list of cases:

  - section: record            # record, event, rpc or presence; may be left
    action: write              # out when the action has one section only
    name: auction/item/sam/lamp
    user: {id: bea, data: {canBid: true}, claims: {}}
    data: {price: 12}          # what the rule sees as data
    oldData: {price: 10}       # and as oldData
    records: {other/name: {}}  # what record() finds (others are null)
    now: 2026-01-01T00:00:00Z  # optional
    want: allow                # allow or deny

test prints each failing case with the pattern and rule that decided it.
Both exit with status 1 on any error or failure.
`

// rulesCommand runs "switchboard rules ...": args are what follows
// "rules". Reports go to stdout; the error, if any, is the one line the
// command ends with.
func rulesCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, rulesUsage)
		return errors.New("rules: a command is needed (check or test)")
	}
	switch {
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stdout, rulesUsage)
		return nil
	case args[0] == "check" && len(args) == 2:
		return rulesCheck(args[1], stdout)
	case args[0] == "test" && len(args) == 3:
		return rulesTest(ctx, args[1], args[2], stdout)
	}
	fmt.Fprint(stdout, rulesUsage)
	return fmt.Errorf("rules: bad arguments %q", args)
}

// loadRules reads and compiles a rules file, printing its problems.
func loadRules(file string, stdout io.Writer) (*rules.Rules, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	r, err := rules.Compile(file, src)
	if err != nil {
		return nil, report(stdout, file, err)
	}
	return r, nil
}

// report prints a file's problems, one a line, and returns the summary.
func report(stdout io.Writer, file string, err error) error {
	var errs rules.Errors
	if !errors.As(err, &errs) {
		return fmt.Errorf("rules: %s: %w", file, err)
	}
	for _, e := range errs {
		fmt.Fprintln(stdout, e.Error())
	}
	if len(errs) == 1 {
		return fmt.Errorf("rules: %s: 1 error", file)
	}
	return fmt.Errorf("rules: %s: %d errors", file, len(errs))
}

func rulesCheck(file string, stdout io.Writer) error {
	if _, err := loadRules(file, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", file)
	return nil
}

func rulesTest(ctx context.Context, file, casesFile string, stdout io.Writer) error {
	r, err := loadRules(file, stdout)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(casesFile)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	cases, err := rules.ParseCases(casesFile, src)
	if err != nil {
		return report(stdout, casesFile, err)
	}
	failed := 0
	for _, c := range cases {
		d := r.Run(ctx, c)
		if d.Allowed == c.Want {
			continue
		}
		failed++
		fmt.Fprintf(stdout, "%s:%d: FAIL %s: want %s, got %s\n", casesFile, c.Line, c, verdict(c.Want), verdict(d.Allowed))
		if d.Pattern == "" {
			fmt.Fprintf(stdout, "    no rule: %s\n", d.Reason)
			continue
		}
		fmt.Fprintf(stdout, "    decided by %s %q %s at %s:%d: %s\n", c.Query.Section, d.Pattern, c.Query.Action, file, d.Line, d.Rule)
		fmt.Fprintf(stdout, "    %s\n", d.Reason)
	}
	fmt.Fprintf(stdout, "%s: %d cases, %d passed, %d failed\n", casesFile, len(cases), len(cases)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("rules: %d of %d cases failed", failed, len(cases))
	}
	return nil
}

func verdict(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}
