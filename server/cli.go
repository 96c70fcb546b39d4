package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/api/client"
)

// cliCommands are the client subcommands: they talk to a running server at
// SWITCHBOARD_URL and read no server configuration.
var cliCommands = map[string]string{
	"get": `usage: switchboard get [--path P] NAME

prints the record NAME as {"name","version","data"}; with --path, the
value at P (a dot path such as position.x, or a JSON Pointer such as
/position/x) as {"name","version","path","data"}.
`,
	"put": `usage: switchboard put [--if-match VERSION] [--path P] NAME JSON

replaces the data of the record NAME with JSON (creating the record) and
prints the record. With --path, sets only the value at P (a dot path such
as position.x, or a JSON Pointer), creating the missing objects on the
way. With --if-match, writes only if the record is at VERSION (* : only
if it exists); else exit status 1 and VERSION_CONFLICT. Put -- before a
JSON value that starts with a dash: put -- n -1.
`,
	"patch": `usage: switchboard patch [--if-match VERSION] NAME JSON

applies JSON as a merge patch (RFC 7396) to the record NAME and prints the
record. With --if-match, only if the record is at VERSION (* : only if it
exists); else exit status 1 and VERSION_CONFLICT.
`,
	"delete": `usage: switchboard delete [--if-match VERSION] [--path P] NAME

deletes the record NAME and prints nothing; with --path, removes only the
value at P and prints the record. With --if-match, only if the record is
at VERSION (* : only if it exists); else exit status 1 and
VERSION_CONFLICT.
`,
	"emit": "usage: switchboard emit NAME JSON\n\npublishes the event NAME with JSON and prints {\"id\"}.\n",
	"call": "usage: switchboard call NAME JSON\n\ncalls the RPC NAME with JSON and prints its answer.\n",
	"tail": `usage: switchboard tail [--from ID] SUB...

prints every frame of a stream, one JSON object a line:
{"event":..., "id":..., "data":...}. SUB is KIND:NAME, such as
record:driver/14, record:driver/*, event:chat/*, presence:*, listen:prices/*.
--from ID resumes after the frame ID. When the stream ends it reconnects,
resuming after the last frame it printed, until interrupted; but when the
token has expired or is refused (401), it ends with exit status 1 and
UNAUTHENTICATED.
`,
}

const cliEnvUsage = `
SWITCHBOARD_URL is the server (default http://localhost:8080),
SWITCHBOARD_TOKEN a bearer token, if any. Exit status: 0 ok, 1 an error
(the server's code and detail on stderr), 2 bad usage.
`

// ExitError is an error with the exit status the command should end with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process's exit status for this error.
func (e *ExitError) ExitCode() int { return e.Code }

func usageError(stdout io.Writer, cmd, format string, a ...any) error {
	fmt.Fprint(stdout, cliCommands[cmd], cliEnvUsage)
	return &ExitError{Code: 2, Err: fmt.Errorf(cmd+": "+format, a...)}
}

// failed turns an error of the server or of the connection into exit
// status 1, the problem's code and detail as its message.
func failed(cmd string, err error) error {
	var ce *client.Error
	if errors.As(err, &ce) {
		return &ExitError{Code: 1, Err: fmt.Errorf("%s: %s: %s", cmd, ce.Code, ce.Detail)}
	}
	return &ExitError{Code: 1, Err: fmt.Errorf("%s: %w", cmd, err)}
}

// cliCommand runs a client subcommand: args are what follows its name.
func cliCommand(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var from, path, ifMatch string
	switch cmd {
	case "tail":
		fs.StringVar(&from, "from", "", "resume after this frame id")
	case "get":
		fs.StringVar(&path, "path", "", "the path inside the record")
	case "put", "delete":
		fs.StringVar(&path, "path", "", "the path inside the record")
		fs.StringVar(&ifMatch, "if-match", "", "the version to write at, or *")
	case "patch":
		fs.StringVar(&ifMatch, "if-match", "", "the version to write at, or *")
	}
	args, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, cliCommands[cmd], cliEnvUsage)
			return nil
		}
		return usageError(stdout, cmd, "%v", err)
	}
	var cond client.Cond
	if ifMatch == "*" {
		cond.IfExists = true
	} else if ifMatch != "" {
		v, err := strconv.ParseInt(ifMatch, 10, 64)
		if err != nil || v < 1 {
			return usageError(stdout, cmd, "--if-match %q: want a version (1 or more) or *", ifMatch)
		}
		cond.IfMatch = v
	}
	withPath := false
	fs.Visit(func(f *flag.Flag) { withPath = withPath || f.Name == "path" })
	base := strings.TrimRight(getenv("SWITCHBOARD_URL"), "/")
	if base == "" {
		base = "http://localhost:8080"
	}
	token := getenv("SWITCHBOARD_TOKEN")
	c := client.NewClient(base, client.WithToken(token))
	wantArgs := map[string]int{"get": 1, "delete": 1, "put": 2, "patch": 2, "emit": 2, "call": 2}
	if cmd == "tail" {
		if len(args) == 0 {
			return usageError(stdout, cmd, "a subscription is needed")
		}
		q := url.Values{}
		for _, s := range args {
			kind, name, ok := strings.Cut(s, ":")
			if !ok || name == "" || !(kind == "record" || kind == "event" || kind == "presence" || kind == "listen") {
				return usageError(stdout, cmd, "bad subscription %q: want record:, event:, presence: or listen: and a name", s)
			}
			q.Add(kind, name)
		}
		return tail(ctx, base+"/stream?"+q.Encode(), token, tokenExpiry(token), from, stdout)
	}
	if len(args) != wantArgs[cmd] {
		return usageError(stdout, cmd, "%d arguments wanted, %d given", wantArgs[cmd], len(args))
	}
	var data json.RawMessage
	if len(args) == 2 {
		if !json.Valid([]byte(args[1])) {
			return usageError(stdout, cmd, "the data is not valid JSON: %s", args[1])
		}
		data = json.RawMessage(args[1])
	}
	name := args[0]
	var out any
	switch {
	case cmd == "get" && withPath:
		out, err = c.GetPath(ctx, name, path)
	case cmd == "get":
		out, err = c.Get(ctx, name)
	case cmd == "put" && withPath:
		out, err = c.PutPath(ctx, name, path, data, cond)
	case cmd == "put":
		out, err = c.Put(ctx, name, data, cond)
	case cmd == "patch":
		out, err = c.MergePatch(ctx, name, data, cond)
	case cmd == "delete" && withPath:
		out, err = c.DeletePath(ctx, name, path, cond)
	case cmd == "delete":
		err = c.Delete(ctx, name, cond)
	case cmd == "emit":
		var id string
		id, err = c.Emit(ctx, name, data)
		out = map[string]string{"id": id}
	case cmd == "call":
		var answer json.RawMessage
		err = c.Call(ctx, name, data, &answer)
		out = answer
	}
	if err != nil {
		return failed(cmd, err)
	}
	if out == nil {
		return nil
	}
	line, err := json.Marshal(out)
	if err != nil {
		return failed(cmd, err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// frame is one SSE frame as tail prints it.
type frame struct {
	Event string          `json:"event"`
	ID    string          `json:"id,omitempty"`
	Data  json.RawMessage `json:"data"`
}

// tail prints the frames of the stream at u until ctx ends, reconnecting
// with Last-Event-ID when the stream ends or the server is unreachable.
// An error answer of the server other than a 5xx (such as the 401 of a
// revoked token) ends it with status 1, and so does the end of a stream
// once the token has expired (exp, when the token says; the server ends
// its streams then): it would only be refused again.
func tail(ctx context.Context, u, token string, exp time.Time, last string, stdout io.Writer) error {
	backoff := 100 * time.Millisecond
	for {
		printed, err := tailOnce(ctx, u, token, &last, stdout)
		if ctx.Err() != nil {
			return nil
		}
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee
		}
		if !exp.IsZero() && !time.Now().Before(exp) {
			return &ExitError{Code: 1, Err: fmt.Errorf("tail: %s: the token expired at %s", api.CodeUnauthenticated, exp.UTC().Format(time.RFC3339))}
		}
		if printed {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// tailOnce reads one connection of the stream, updating *last with the id
// of each frame it prints. It reports whether it printed any frame but
// the ready frame that every connection begins with.
func tailOnce(ctx context.Context, u, token string, last *string, stdout io.Writer) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, &ExitError{Code: 2, Err: fmt.Errorf("tail: %w", err)}
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var p struct{ Code, Detail string }
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(body, &p)
		err := fmt.Errorf("tail: %d %s: %s", resp.StatusCode, p.Code, p.Detail)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return false, err // a restart, a drain: try again
		}
		return false, &ExitError{Code: 1, Err: err}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var f frame
	var data bytes.Buffer
	printed := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // the frame's end
			if data.Len() > 0 || f.Event != "" {
				if f.Event == "" {
					f.Event = "message"
				}
				f.Data = json.RawMessage(bytes.Clone(data.Bytes()))
				if !json.Valid(f.Data) {
					f.Data, _ = json.Marshal(data.String())
				}
				out, err := json.Marshal(f)
				if err != nil {
					return printed, err
				}
				if _, err := fmt.Fprintf(stdout, "%s\n", out); err != nil {
					return printed, &ExitError{Code: 1, Err: err}
				}
				printed = printed || f.Event != "ready"
				if f.ID != "" {
					*last = f.ID
				}
			}
			f, data = frame{}, bytes.Buffer{}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			f.Event = value
		case "id":
			f.ID = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		}
	}
	return printed, sc.Err()
}

// parseInterspersed parses the flags of fs wherever they are among args
// (switchboard put driver/14 --path position.x 4) and returns the other
// arguments; after "--" every argument is one of those.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if n := len(args) - len(left); n > 0 && args[n-1] == "--" {
			return append(rest, left...), nil
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// tokenExpiry is the expiry a JWT states (read, not verified: the server
// verifies it), or the zero time for a token that states none.
func tokenExpiry(token string) time.Time {
	if token == "" {
		return time.Time{}
	}
	t, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		return time.Time{}
	}
	exp, err := t.Claims.GetExpirationTime()
	if err != nil || exp == nil {
		return time.Time{}
	}
	return exp.Time
}
