package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const rulesFile = `record:
  "auction/item/$sellerId/$itemId":
    read: true
    create: "user.id == $sellerId"
    write: "user.data.canBid && data.price > oldData.price"
    delete: "user.id == $sellerId"
  "profiles/$id":
    read: "record('admins/' + user.id) != null || user.id == $id"
event:
  "chat/$room":
    publish: "user.id != ''"
    subscribe: true
`

const passingCases = `- action: create
  name: auction/item/sam/lamp
  user: {id: sam}
  data: {price: 10}
  want: allow
- action: write
  name: auction/item/sam/lamp
  user: {id: bea, data: {canBid: true}}
  data: {price: 12}
  oldData: {price: 10}
  want: allow
- section: record
  action: read
  name: profiles/ann
  user: {id: root}
  records: {admins/root: {since: 2020}}
  want: allow
- section: record
  action: read
  name: profiles/ann
  user: {id: bob}
  want: deny
- action: publish
  name: chat/lobby
  data: hi
  want: deny
`

const failingCases = `- action: write
  name: auction/item/sam/lamp
  user: {id: bea, data: {canBid: true}}
  data: {price: 9}
  oldData: {price: 10}
  want: allow
- action: delete
  name: auction/item/sam/lamp
  user: {id: sam}
  oldData: {price: 10}
  want: allow
- action: publish
  name: news/today
  user: {id: ann}
  want: allow
`

// TestRulesCommand runs "switchboard rules check" and "switchboard rules
// test" as a CI job would: their output and their exit status.
func TestRulesCommand(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchboard")
	if out, err := exec.Command(goCmd, "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", rulesFile)
	bad := write("bad.yaml", "record:\n  \"a/$x\":\n    read: \"user.id == $y\"\n    write: 12\nevents: {}\n")
	pass := write("pass.yaml", passingCases)
	fail := write("fail.yaml", failingCases)
	broken := write("broken.yaml", "- action: read\n  name: x\n  want: maybe\n")

	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PORT=not-a-port"} // the rules commands read no configuration
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}
	for _, tt := range []struct {
		args     []string
		code     int
		stdout   []string // each must appear
		stderr   string
		noStdout string
	}{
		{args: []string{"rules", "check", good}, code: 0, stdout: []string{good + ": ok\n"}},
		{args: []string{"rules", "check", bad}, code: 1, stdout: []string{
			bad + `:3: record "a/$x" read: undeclared reference to '$y'`,
			bad + `:4: record "a/$x" write: a rule is true, false or an expression in a string`,
			bad + `:5: unknown section "events"`,
		}, stderr: "rules: " + bad + ": 3 errors"},
		{args: []string{"rules", "check", filepath.Join(dir, "missing.yaml")}, code: 1, stderr: "no such file"},
		{args: []string{"rules", "test", good, pass}, code: 0, stdout: []string{pass + ": 5 cases, 5 passed, 0 failed"}, noStdout: "FAIL"},
		{args: []string{"rules", "test", good, fail}, code: 1, stdout: []string{
			fail + `:1: FAIL record write "auction/item/sam/lamp" as user "bea": want allow, got deny`,
			`decided by record "auction/item/$sellerId/$itemId" write at ` + good + `:5: user.data.canBid && data.price > oldData.price`,
			"the expression is false",
			fail + `:12: FAIL event publish "news/today" as user "ann": want allow, got deny`,
			"no rule: no publish rule matches event \"news/today\"",
			fail + ": 3 cases, 1 passed, 2 failed",
		}, stderr: "rules: 2 of 3 cases failed"},
		{args: []string{"rules", "test", bad, pass}, code: 1, stdout: []string{bad + ":3:"}, stderr: "3 errors"},
		{args: []string{"rules", "test", good, broken}, code: 1, stdout: []string{broken + `:1: action "read" needs a section (one of record, presence)`, broken + `:1: want is allow or deny, not "maybe"`}, stderr: "2 errors"},
		{args: []string{"rules", "--help"}, code: 0, stdout: []string{"switchboard rules check FILE", "switchboard rules test FILE CASES"}},
		{args: []string{"rules"}, code: 1, stdout: []string{"usage:"}, stderr: "a command is needed"},
		{args: []string{"rules", "check"}, code: 1, stdout: []string{"usage:"}, stderr: "bad arguments"},
	} {
		stdout, stderr, code := run(tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", tt.args, code, tt.code, stdout, stderr)
		}
		for _, want := range tt.stdout {
			if !strings.Contains(stdout, want) {
				t.Errorf("%q: stdout lacks %q:\n%s", tt.args, want, stdout)
			}
		}
		if !strings.Contains(stderr, tt.stderr) || (tt.stderr == "") != (stderr == "") {
			t.Errorf("%q: stderr %q, want %q", tt.args, stderr, tt.stderr)
		}
		if tt.noStdout != "" && strings.Contains(stdout, tt.noStdout) {
			t.Errorf("%q: stdout has %q:\n%s", tt.args, tt.noStdout, stdout)
		}
	}
}
