package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestReadmeCurl is the README's drift test: it runs the first sh block of
// the README's "Use it with curl" section, every command as written and in
// order, with a real curl against a fresh server in open mode (the
// server's address for localhost:8080). A command whose comment starts
// with a status must get that status, any other a 2xx; a comment that
// names a version ("version":N or "at version N") must find it in the
// answer (as its version, or a 412's currentVersion).
func TestReadmeCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed to run the README's examples: run `make deps`: %v", err)
	}
	cmds := readmeCommands(t, "../README.md", "## Use it with curl")
	if len(cmds) < 10 {
		t.Fatalf("found %d commands in the README's curl block, want the whole block", len(cmds))
	}
	srv := startServer(t, nil)
	host := strings.TrimPrefix(srv.URL, "http://")
	for i, c := range cmds {
		line := strings.ReplaceAll(c.shell, "localhost:8080", host)
		if !strings.HasPrefix(line, "curl ") {
			t.Fatalf("command %d is not a curl command: %s", i+1, c.shell)
		}
		line = curl + ` -sS -w '\n%{http_code}' ` + strings.TrimPrefix(line, "curl ")
		out, err := exec.CommandContext(t.Context(), "sh", "-c", line).Output()
		if err != nil {
			t.Fatalf("command %d: %s\n%v\n%s", i+1, c.shell, err, out)
		}
		body, code := "", string(out)
		if j := strings.LastIndexByte(code, '\n'); j >= 0 {
			body, code = code[:j], code[j+1:]
		}
		status, _ := strconv.Atoi(code)
		switch {
		case c.status != 0 && status != c.status,
			c.status == 0 && (status < 200 || status > 299):
			t.Errorf("command %d: %s\n  got %d %s\n  the README says: %s", i+1, c.shell, status, body, c.comment)
		case c.version != "" && !strings.Contains(body, `"version":`+c.version) && !strings.Contains(body, `"currentVersion":`+c.version):
			t.Errorf("command %d: %s\n  got %d %s\n  the README says version %s: %s", i+1, c.shell, status, body, c.version, c.comment)
		}
	}
}

// readmeCommand is one command of a README shell block.
type readmeCommand struct {
	shell   string // the command, continuation lines joined, its comment cut
	comment string
	status  int    // the status its comment starts with, or 0
	version string // the version its comment names, or ""
}

var (
	commentStatus  = regexp.MustCompile(`^([1-5][0-9][0-9])\b`)
	commentVersion = regexp.MustCompile(`"version":([0-9]+)|at version ([0-9]+)`)
)

// readmeCommands returns the commands of the first sh block after the
// heading in the file at path.
func readmeCommands(t *testing.T, path, heading string) []readmeCommand {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []readmeCommand
	var pending string
	state := 0 // 0: before the heading, 1: before the block, 2: in it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == heading:
			state = 1
		case state == 1 && strings.HasPrefix(line, "## "):
			t.Fatalf("%s: no sh block under %q", path, heading)
		case state == 1 && line == "```sh":
			state = 2
		case state == 2 && line == "```":
			return cmds
		case state == 2:
			if more, ok := strings.CutSuffix(line, `\`); ok {
				pending += more
				continue
			}
			shell, comment := cutComment(pending + line)
			pending = ""
			if shell == "" {
				continue
			}
			c := readmeCommand{shell: shell, comment: comment}
			if m := commentStatus.FindStringSubmatch(comment); m != nil {
				c.status, _ = strconv.Atoi(m[1])
			}
			if m := commentVersion.FindStringSubmatch(comment); m != nil {
				c.version = m[1] + m[2]
			}
			cmds = append(cmds, c)
		}
	}
	t.Fatalf("%s: no whole sh block under %q", path, heading)
	return nil
}

// cutComment splits a shell line at its comment: a # after a space,
// outside quotes.
func cutComment(line string) (string, string) {
	var quote byte
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' '):
			return strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		}
	}
	return strings.TrimSpace(line), ""
}
