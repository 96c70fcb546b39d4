package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// TestOpenRefusesAFileCutShort: a bbolt file cut short is refused with
// an error that says so, where bbolt would fault past its end; the same
// file whole passes, and so does no file at all.
func TestOpenRefusesAFileCutShort(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, err := s.Write(context.Background(), []api.Write{{Kind: api.KindEvent, Name: "e", Data: []byte(fmt.Sprintf(`"%0500d"`, i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "switchboard.db")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkLength(file); err != nil {
		t.Fatalf("a whole file: %v", err)
	}
	// bbolt grows its file in steps: cut into the pages it uses.
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := readMeta(f, 0)
	f.Close()
	if !ok || m.pages < 100 {
		t.Fatalf("meta page 0 = %+v, %v: want one naming the pages written", m, ok)
	}
	if err := os.WriteFile(file, data[:m.pages*uint64(m.pageSize)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Open on a file cut in half = %v, want it refused as cut short", err)
	}
	if err := checkLength(filepath.Join(t.TempDir(), "switchboard.db")); err != nil {
		t.Fatalf("no file yet: %v", err)
	}
}
