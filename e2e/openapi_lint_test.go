package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// redoclyCLI is the linter that checks openapi.yaml, pinned so that a new
// release's rules do not fail the build unannounced.
const redoclyCLI = "@redocly/cli@2.77.0"

// TestOpenAPILint runs a third-party linter over openapi.yaml with the
// repository's redocly.yaml (the recommended rules): no error and no
// warning. It needs npx (Node.js), which `make deps` installs.
func TestOpenAPILint(t *testing.T) {
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Fatalf("npx (Node.js) is needed to lint openapi.yaml: run `make deps`: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npx, "--yes", redoclyCLI, "lint", "--format=stylish", "--max-problems=100", "openapi.yaml")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil || !lintClean(string(out)) {
		t.Errorf("%s lint openapi.yaml: %v\n%s", redoclyCLI, err, out)
	}
}

// lintClean reports whether the linter's output says that it found no
// problem at all, warnings included.
func lintClean(out string) bool {
	return strings.Contains(out, "Your API description is valid") &&
		!strings.Contains(out, "warning  ") && !strings.Contains(out, "error  ")
}
