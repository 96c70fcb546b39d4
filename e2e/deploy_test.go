package e2e

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"github.com/switchboard-dev/switchboard/server"
)

// The deploy files at the repository's root, checked against the server's
// defaults (server.Config's envDefault tags) and run where they can be.
const (
	dockerfilePath = "../Dockerfile"
	dataMount      = "/data" // where the image, fly.toml and the README put the store
)

// instruction is one Dockerfile instruction: its keyword, upper case, and
// the rest of its line, continuations joined.
type instruction struct{ cmd, args string }

// readDockerfile returns the Dockerfile's stages, each its instructions
// from its FROM on.
func readDockerfile(t *testing.T) [][]instruction {
	t.Helper()
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if line == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if rest, ok := strings.CutSuffix(l, "\\"); ok {
			line += rest + " "
			continue
		}
		line += l
		cmd, args, _ := strings.Cut(line, " ")
		line = ""
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before any FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages; want a build stage and a final one", len(stages))
	}
	return stages
}

// shellWords splits a command line as a shell does for the simple cases a
// Dockerfile's RUN holds: words apart by blanks, quotes kept together and
// removed. Anything else (a $, a pipe, a ;) is refused, so that the test
// never runs something other than what the line says.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	if strings.ContainsAny(s, "$`|;<>&\\") {
		t.Fatalf("the go build line %q has shell syntax this test does not read; keep it a plain command", s)
	}
	var words []string
	var w strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words, in = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// configDefaults returns every variable's default from server.Config's
// tags: the defaults that the deploy files must agree with.
func configDefaults(t *testing.T) map[string]string {
	t.Helper()
	d := map[string]string{}
	typ := reflect.TypeOf(server.Config{})
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ",")
		d[name] = typ.Field(i).Tag.Get("envDefault")
	}
	return d
}

// imageUser returns the uid and gid of the final stage's USER, which must
// be numeric and not root.
func imageUser(t *testing.T, final []instruction) (uid, gid int) {
	t.Helper()
	for _, in := range final {
		if in.cmd != "USER" {
			continue
		}
		u, g, ok := strings.Cut(in.args, ":")
		var err1, err2 error
		uid, err1 = strconv.Atoi(u)
		gid, err2 = strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil || uid == 0 {
			t.Fatalf("Dockerfile: USER %s; want a numeric uid:gid other than root", in.args)
		}
		return uid, gid
	}
	t.Fatal("Dockerfile: the final stage has no USER (it would run as root)")
	return
}

// TestDockerfile checks what can be checked of the image without a Docker
// engine: a static build, a distroless nonroot base, the data directory
// owned by the image's user, and the port, data directory and command
// that the server and the deploy files expect.
func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	final := stages[len(stages)-1]
	if base := final[0].args; !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.HasSuffix(base, ":nonroot") {
		t.Errorf("Dockerfile: final stage FROM %s; want distroless static, nonroot", base)
	}
	uid, gid := imageUser(t, final)
	owner := fmt.Sprintf("--chown=%d:%d", uid, gid)
	env := map[string]string{}
	var copiesBinary, copiesData, exposes bool
	for _, in := range final {
		f := strings.Fields(in.args)
		switch in.cmd {
		case "COPY":
			dest := f[len(f)-1]
			copiesBinary = copiesBinary || dest == "/switchboard"
			if dest == dataMount {
				copiesData = true
				if !strings.Contains(in.args, owner) {
					t.Errorf("Dockerfile: COPY %s; want %s, the image's user", in.args, owner)
				}
			}
		case "ENV":
			for _, kv := range f {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		case "EXPOSE":
			exposes = in.args == configDefaults(t)["PORT"]
		case "CMD":
			if in.args != `["/switchboard"]` {
				t.Errorf(`Dockerfile: CMD %s; want ["/switchboard"] (exec form, so that a release_command replaces it)`, in.args)
			}
		}
	}
	if !copiesBinary || !copiesData {
		t.Errorf("Dockerfile: the final stage copies the binary: %v, a %s of its own: %v; want both", copiesBinary, dataMount, copiesData)
	}
	if env["DATA_DIR"] != dataMount || env["PORT"] != configDefaults(t)["PORT"] || !exposes {
		t.Errorf("Dockerfile: ENV DATA_DIR=%s PORT=%s, EXPOSE matches: %v; want %s, the default PORT %s, exposed",
			env["DATA_DIR"], env["PORT"], exposes, dataMount, configDefaults(t)["PORT"])
	}
	build := goBuildLine(t, stages)
	if !strings.Contains(build, "CGO_ENABLED=0 ") || !strings.Contains(build, " -trimpath") {
		t.Errorf("Dockerfile: %q; want CGO_ENABLED=0 and -trimpath", build)
	}
}

// goBuildLine returns the command of the build stage's RUN that runs go
// build.
func goBuildLine(t *testing.T, stages [][]instruction) string {
	t.Helper()
	for _, stage := range stages[:len(stages)-1] {
		for _, in := range stage {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				return in.args
			}
		}
	}
	t.Fatal("Dockerfile: no RUN ... go build in a build stage")
	return ""
}

// buildAsDockerfile builds the command with exactly the Dockerfile's go
// build line (its variables, its flags), into bin.
func buildAsDockerfile(t *testing.T, bin string) {
	t.Helper()
	words := shellWords(t, goBuildLine(t, readDockerfile(t)))
	env := os.Environ()
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("the Dockerfile's build line runs %q; want go build", words)
	}
	args := append([]string(nil), words[1:]...)
	replaced := false
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1], replaced = bin, true
		}
	}
	if !replaced {
		t.Fatal("the Dockerfile's go build has no -o")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goCmd, args...)
	cmd.Dir, cmd.Env = "..", env // the Dockerfile builds at the repository's root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestImageBinary builds the binary as the Dockerfile does and runs it as
// the image does: alone in an empty root (a chroot: no libc, no
// /etc/passwd, nothing beside it), as the image's user, with DATA_DIR
// /data. On a data directory that root owns with mode 0755 (a volume
// mounted for root) it stops at start, non-zero, with an error that names
// the directory, the user and the owner; on one the user owns it serves
// and keeps what it is sent there.
func TestImageBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it runs the binary in a chroot as the image's user")
	}
	uid, gid := imageUser(t, readDockerfile(t)[len(readDockerfile(t))-1])
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil { // the chroot's /, which the user must search
		t.Fatal(err)
	}
	bin := filepath.Join(root, "switchboard")
	buildAsDockerfile(t, bin)
	assertStatic(t, bin)
	data := filepath.Join(root, strings.TrimPrefix(dataMount, "/"))
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("root-owned data directory", func(t *testing.T) {
		cmd, stderr := imageCommand(root, uid, gid)
		cmd.Stdout = io.Discard
		err := cmd.Run()
		msg := stderr.String()
		t.Logf("the server said %q", msg)
		if err == nil || cmd.ProcessState.ExitCode() == 0 {
			t.Fatalf("the server started on a root-owned %s (%v); want it to stop", dataMount, err)
		}
		for _, want := range []string{"data directory " + dataMount + " is not writable",
			fmt.Sprintf("uid %d, gid %d", uid, gid), dataMount + " belongs to uid 0, gid 0",
			fmt.Sprintf("chown %d:%d %s", uid, gid, dataMount)} {
			if !strings.Contains(msg, want) {
				t.Errorf("the server said %q; want it to say %q", msg, want)
			}
		}
		if strings.Contains(msg, "another server") {
			t.Errorf("the server said %q: it blames another server", msg)
		}
	})

	t.Run("data directory of the image's user", func(t *testing.T) {
		if err := os.Chown(data, uid, gid); err != nil {
			t.Fatal(err)
		}
		cmd, stderr := imageCommand(root, uid, gid)
		stdout, logw := io.Pipe()
		cmd.Stdout = logw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() {
			err := cmd.Wait()
			logw.Close()
			exited <- err
		}()
		t.Cleanup(func() { cmd.Process.Kill() })
		var url string
		select {
		case url = <-listening(stdout):
		case err := <-exited:
			t.Fatalf("the server exited at start: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not start in 10s")
		}
		waitHealthy(t, url)
		if st, _, body := do(t, http.MethodPut, url+"/records/deploy/check", "application/json", `{"ok":true}`); st/100 != 2 {
			t.Fatalf("PUT a record: %d %s", st, body)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the server did not exit in 15s after SIGTERM")
		}
		info, err := os.Stat(filepath.Join(data, "switchboard.db"))
		if err != nil {
			t.Fatalf("the store's file: %v", err)
		}
		if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("switchboard.db belongs to uid %d; want %d, the image's user", st.Uid, uid)
		}
	})
}

// imageCommand is the binary at root's /switchboard, run in a chroot of
// root as uid:gid with the image's environment (but an ephemeral port, on
// the loopback).
func imageCommand(root string, uid, gid int) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command("/switchboard")
	cmd.Dir = "/"
	cmd.Env = []string{"HOST=127.0.0.1", "PORT=0", "DATA_DIR=" + dataMount, "AUTH_MODE=open"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// assertStatic fails unless bin is an ELF executable that needs no
// dynamic loader and no shared library.
func assertStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a dynamic loader (PT_INTERP): it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v: it is not static", libs)
	}
}

// TestLogFormatGCP runs a server with LOG_FORMAT=gcp, as on Cloud Run: each
// line is Cloud Logging's JSON, and a request sent with Cloud Run's trace
// header is logged as an httpRequest linked to its trace.
func TestLogFormatGCP(t *testing.T) {
	const traceID = "105445aa7843bc8bf206b12000100000"
	vars := map[string]string{"HOST": "127.0.0.1", "PORT": "0", "AUTH_MODE": "open", "DATA_DIR": t.TempDir(),
		"LOG_FORMAT": "gcp", "GOOGLE_CLOUD_PROJECT": "my-project"}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := server.Run(ctx, []string{"switchboard"}, func(k string) string { return vars[k] }, pw, openapiYAML(t))
		pw.Close()
		done <- err
	}()
	lines := make(chan map[string]any, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("a log line that is no JSON: %q", sc.Text())
				continue
			}
			lines <- line
		}
	}()
	var url string
	for url == "" {
		select {
		case line := <-lines:
			if line["message"] == "listening" {
				url, _ = line["addr"].(string)
			}
			if line["severity"] == nil || line["msg"] != nil || line["level"] != nil {
				t.Errorf("log line %v: want severity and message, not level and msg", line)
			}
		case err := <-done:
			t.Fatalf("the server did not start: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no listening line in 10s")
		}
	}
	waitHealthy(t, url)
	st, _, body := do(t, http.MethodPut, url+"/records/gcp/one", "application/json", `{"a":1}`,
		"X-Cloud-Trace-Context", traceID+"/42;o=1")
	if st/100 != 2 {
		t.Fatalf("PUT: %d %s", st, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("server.Run: %v", err)
	}
	found := false
	for line := range lines { // to the end, which the server's return closed
		req, _ := line["httpRequest"].(map[string]any)
		if found || req == nil || req["requestMethod"] != http.MethodPut {
			continue
		}
		found = true
		latency, _ := req["latency"].(string)
		if req["requestUrl"] != "/records/gcp/one" || req["status"] != float64(st) || !strings.HasSuffix(latency, "s") ||
			line["logging.googleapis.com/trace"] != "projects/my-project/traces/"+traceID ||
			line["logging.googleapis.com/spanId"] != "000000000000002a" || line["logging.googleapis.com/trace_sampled"] != true ||
			line["severity"] != "INFO" {
			t.Errorf("the request's line: %v; want its httpRequest, latency in seconds, and its trace", line)
		}
	}
	if !found {
		t.Error("no line with the PUT's httpRequest")
	}
}

// flyConfig is the part of a fly.toml that the server depends on.
type flyConfig struct {
	KillSignal  string `toml:"kill_signal"`
	KillTimeout any    `toml:"kill_timeout"` // "30s" or a number of seconds
	SwapSizeMB  int    `toml:"swap_size_mb"`
	Deploy      struct {
		ReleaseCommand string `toml:"release_command"`
		Strategy       string `toml:"strategy"`
	} `toml:"deploy"`
	Env         map[string]string `toml:"env"`
	HTTPService struct {
		InternalPort       int `toml:"internal_port"`
		AutoStopMachines   any `toml:"auto_stop_machines"` // "off" or false
		MinMachinesRunning int `toml:"min_machines_running"`
		Concurrency        struct {
			Type      string `toml:"type"`
			SoftLimit int    `toml:"soft_limit"`
			HardLimit int    `toml:"hard_limit"`
		} `toml:"concurrency"`
		Checks []struct {
			Method string `toml:"method"`
			Path   string `toml:"path"`
		} `toml:"checks"`
	} `toml:"http_service"`
	Mounts []struct {
		Source      string `toml:"source"`
		Destination string `toml:"destination"`
	} `toml:"mounts"`
}

func readFly(t *testing.T, file string) (flyConfig, string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c flyConfig
	if _, err := toml.Decode(string(b), &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c, string(b)
}

// envOrDefault is the value a deploy file's environment gives a variable,
// or the server's default.
func envOrDefault(t *testing.T, env map[string]string, name string) string {
	t.Helper()
	if v, ok := env[name]; ok {
		return v
	}
	d, ok := configDefaults(t)[name]
	if !ok {
		t.Fatalf("%s is no variable of the server", name)
	}
	return d
}

func mustDuration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return d
}

// checkFly checks what both Fly setups share: the port, the signal and a
// kill timeout longer than the drain, streams as connections, no stopping
// of idle machines, the health check on /readyz, and every variable a
// variable of the server.
func checkFly(t *testing.T, file string, c flyConfig) {
	t.Helper()
	if port := strconv.Itoa(c.HTTPService.InternalPort); port != configDefaults(t)["PORT"] || envOrDefault(t, c.Env, "PORT") != port {
		t.Errorf("%s: internal_port %s, PORT %s; want the server's default PORT %s", file, port, envOrDefault(t, c.Env, "PORT"), configDefaults(t)["PORT"])
	}
	kill := fmt.Sprint(c.KillTimeout)
	if n, err := strconv.Atoi(kill); err == nil {
		kill = fmt.Sprintf("%ds", n)
	}
	drain := mustDuration(t, "SHUTDOWN_TIMEOUT", envOrDefault(t, c.Env, "SHUTDOWN_TIMEOUT"))
	if c.KillSignal != "SIGTERM" || mustDuration(t, file+": kill_timeout", kill) <= drain {
		t.Errorf("%s: kill_signal %q, kill_timeout %s; want SIGTERM and longer than SHUTDOWN_TIMEOUT %v", file, c.KillSignal, kill, drain)
	}
	if s := fmt.Sprint(c.HTTPService.AutoStopMachines); s != "off" && s != "false" {
		t.Errorf("%s: auto_stop_machines = %s; want off (an open stream is no idle machine)", file, s)
	}
	cc := c.HTTPService.Concurrency
	if cc.Type != "connections" || cc.SoftLimit < 1000 || cc.HardLimit < cc.SoftLimit {
		t.Errorf("%s: concurrency %+v; want connections, with limits for thousands of long-lived streams", file, cc)
	}
	if len(c.HTTPService.Checks) == 0 {
		t.Errorf("%s: no health check", file)
	}
	for _, ck := range c.HTTPService.Checks {
		if ck.Path != "/readyz" || ck.Method != "GET" {
			t.Errorf("%s: health check %s %s; want GET /readyz (503 while draining)", file, ck.Method, ck.Path)
		}
	}
	if c.SwapSizeMB != 0 {
		t.Errorf("%s: swap_size_mb makes Fly start the image as root", file)
	}
	for k := range c.Env {
		if _, ok := configDefaults(t)[k]; !ok {
			t.Errorf("%s: [env] %s is no variable of the server", file, k)
		}
	}
}

// TestFlyToml: one machine with its volume on the image's data directory,
// and no release command (a release machine has no volume, and migrate is
// for Postgres).
func TestFlyToml(t *testing.T) {
	c, _ := readFly(t, "../fly.toml")
	checkFly(t, "fly.toml", c)
	if len(c.Mounts) != 1 || c.Mounts[0].Destination != dataMount || c.Env["DATA_DIR"] != dataMount {
		t.Errorf("fly.toml: mounts %+v, DATA_DIR %q; want one volume on %s, where DATA_DIR points", c.Mounts, c.Env["DATA_DIR"], dataMount)
	}
	if c.Deploy.ReleaseCommand != "" || c.Env["DATABASE_URL"] != "" {
		t.Errorf("fly.toml: release_command %q, DATABASE_URL %q; want neither on the embedded store", c.Deploy.ReleaseCommand, c.Env["DATABASE_URL"])
	}
}

// TestFlyPostgresToml: many machines on Postgres, no mounts, migrations as
// the release command, rolling deploys over at least two machines, and
// DATABASE_DIRECT_URL explained.
func TestFlyPostgresToml(t *testing.T) {
	c, text := readFly(t, "../fly.postgres.toml")
	checkFly(t, "fly.postgres.toml", c)
	if len(c.Mounts) != 0 || c.Env["DATA_DIR"] != "" {
		t.Errorf("fly.postgres.toml: mounts %+v, DATA_DIR %q; want neither", c.Mounts, c.Env["DATA_DIR"])
	}
	if c.Deploy.ReleaseCommand != "/switchboard migrate" || c.Deploy.Strategy != "rolling" || c.HTTPService.MinMachinesRunning < 2 {
		t.Errorf("fly.postgres.toml: deploy %+v, min_machines_running %d; want release_command /switchboard migrate, rolling, two machines",
			c.Deploy, c.HTTPService.MinMachinesRunning)
	}
	for _, want := range []string{"DATABASE_URL", "DATABASE_DIRECT_URL", "pooled"} {
		if !strings.Contains(text, want) {
			t.Errorf("fly.postgres.toml does not explain %s", want)
		}
	}
}

// cloudRunService is the part of a Knative service that the server
// depends on.
type cloudRunService struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				ContainerConcurrency int `yaml:"containerConcurrency"`
				TimeoutSeconds       int `yaml:"timeoutSeconds"`
				Containers           []struct {
					Ports []struct {
						ContainerPort int `yaml:"containerPort"`
					} `yaml:"ports"`
					Env []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom any    `yaml:"valueFrom"`
					} `yaml:"env"`
					StartupProbe  probe `yaml:"startupProbe"`
					LivenessProbe probe `yaml:"livenessProbe"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port int    `yaml:"port"`
	} `yaml:"httpGet"`
}

// TestCloudRunYAML: the request timeout at Cloud Run's maximum with
// STREAM_MAX_LIFETIME below it, a drain shorter than Cloud Run's 10 s,
// CPU always allocated, min instances, concurrency for streams, probes on
// the server's port, Cloud SQL and Postgres, Cloud Logging's format.
func TestCloudRunYAML(t *testing.T) {
	b, err := os.ReadFile("../deploy/cloudrun.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var svc cloudRunService
	if err := yaml.Unmarshal(b, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.APIVersion != "serving.knative.dev/v1" || svc.Kind != "Service" {
		t.Errorf("cloudrun.yaml: %s %s; want a serving.knative.dev/v1 Service", svc.APIVersion, svc.Kind)
	}
	tmpl := svc.Spec.Template
	if len(tmpl.Spec.Containers) != 1 {
		t.Fatalf("cloudrun.yaml: %d containers; want 1", len(tmpl.Spec.Containers))
	}
	ctr := tmpl.Spec.Containers[0]
	env := map[string]string{}
	secret := map[string]bool{}
	for _, e := range ctr.Env {
		if _, ok := configDefaults(t)[e.Name]; !ok {
			t.Errorf("cloudrun.yaml: env %s is no variable of the server", e.Name)
		}
		env[e.Name], secret[e.Name] = e.Value, e.ValueFrom != nil
	}
	timeout := time.Duration(tmpl.Spec.TimeoutSeconds) * time.Second
	if life := mustDuration(t, "STREAM_MAX_LIFETIME", envOrDefault(t, env, "STREAM_MAX_LIFETIME")); timeout != time.Hour || life >= timeout {
		t.Errorf("cloudrun.yaml: timeoutSeconds %v, STREAM_MAX_LIFETIME %v; want 3600 s, and the lifetime below it", timeout, life)
	}
	if drain := mustDuration(t, "SHUTDOWN_TIMEOUT", envOrDefault(t, env, "SHUTDOWN_TIMEOUT")); drain >= 10*time.Second {
		t.Errorf("cloudrun.yaml: SHUTDOWN_TIMEOUT %v; want under Cloud Run's 10 s from SIGTERM to kill", drain)
	}
	ann := tmpl.Metadata.Annotations
	if ann["run.googleapis.com/cpu-throttling"] != "false" {
		t.Error("cloudrun.yaml: CPU is not always allocated (run.googleapis.com/cpu-throttling: \"false\")")
	}
	if n, _ := strconv.Atoi(ann["autoscaling.knative.dev/minScale"]); n < 1 {
		t.Error("cloudrun.yaml: no min instances (autoscaling.knative.dev/minScale)")
	}
	if ann["run.googleapis.com/cloudsql-instances"] == "" || !secret["DATABASE_URL"] || env["DATA_DIR"] != "" {
		t.Error("cloudrun.yaml: want a Cloud SQL instance and DATABASE_URL from a secret (the disk is memory), no DATA_DIR")
	}
	if c := tmpl.Spec.ContainerConcurrency; c < 250 || c > 1000 {
		t.Errorf("cloudrun.yaml: containerConcurrency %d; want many streams per instance, at most Cloud Run's 1000", c)
	}
	port := configDefaults(t)["PORT"]
	if _, set := env["PORT"]; set || len(ctr.Ports) != 1 || strconv.Itoa(ctr.Ports[0].ContainerPort) != port {
		t.Errorf("cloudrun.yaml: ports %+v; want containerPort %s, the default PORT, and no PORT in env (Cloud Run sets it)", ctr.Ports, port)
	}
	for _, p := range []struct {
		name, path string
		probe      probe
	}{{"startupProbe", "/readyz", ctr.StartupProbe}, {"livenessProbe", "/healthz", ctr.LivenessProbe}} {
		if p.probe.HTTPGet.Path != p.path || strconv.Itoa(p.probe.HTTPGet.Port) != port {
			t.Errorf("cloudrun.yaml: %s %+v; want GET %s on %s", p.name, p.probe.HTTPGet, p.path, port)
		}
	}
	if env["LOG_FORMAT"] != "gcp" || env["GOOGLE_CLOUD_PROJECT"] == "" {
		t.Errorf("cloudrun.yaml: LOG_FORMAT %q, GOOGLE_CLOUD_PROJECT %q; want gcp, with the project", env["LOG_FORMAT"], env["GOOGLE_CLOUD_PROJECT"])
	}
}
