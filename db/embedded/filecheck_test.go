package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
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
	file, data := filledFile(t, dir, func(i int) api.Write {
		return api.Write{Kind: api.KindEvent, Name: "e", Data: []byte(fmt.Sprintf(`"%0500d"`, i))}
	})
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

// TestOpenRefusesADamagedPage: a leaf page overwritten in the middle of
// the file is refused with an error that names the file, where bbolt's
// own walk at open panics on a goroutine of its own and kills the
// process. Leaf pages across the file in turn, so that the check cannot pass by luck:
// a page that opens must be a free one, with every record intact.
func TestOpenRefusesADamagedPage(t *testing.T) {
	dir := t.TempDir()
	file, data := filledFile(t, dir, func(i int) api.Write {
		return api.Write{Kind: api.KindSet, Name: fmt.Sprintf("r/%d", i), Apply: func(json.RawMessage, bool) (json.RawMessage, error) {
			return json.RawMessage(fmt.Sprintf(`"%0300d"`, i)), nil
		}}
	})
	if err := checkPages(file); err != nil {
		t.Fatalf("a whole file: %v", err)
	}
	const pageSize, leafFlag = 4096, 0x02
	var leaves []int
	for off := 2 * pageSize; off+pageSize <= len(data); off += pageSize {
		if binary.LittleEndian.Uint16(data[off+8:]) == leafFlag && binary.LittleEndian.Uint64(data[off:]) == uint64(off/pageSize) {
			leaves = append(leaves, off)
		}
	}
	if len(leaves) < 10 {
		t.Fatalf("%d leaf pages in a %d-byte file: want the records spread over many", len(leaves), len(data))
	}
	refused, step := 0, max(1, len(leaves)/16)
	for j := 0; j < len(leaves); j += step {
		page := leaves[j]
		damaged := bytes.Clone(data)
		for i := page + 16; i < page+pageSize; i++ {
			damaged[i] = 0xff
		}
		if err := os.WriteFile(file, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir)
		if err != nil {
			if !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), dir) {
				t.Fatalf("the leaf page at %d overwritten: %v; want it called damaged, naming the directory", page, err)
			}
			refused++
			continue
		}
		// A page on the free list: nothing refers to it, so every record
		// must read as written.
		for i := range 2000 {
			r, err := s.Get(context.Background(), fmt.Sprintf("r/%d", i))
			if err != nil || string(r.Data) != fmt.Sprintf(`"%0300d"`, i) {
				t.Fatalf("the leaf page at %d overwritten, Open succeeded, and r/%d reads %.40s, %v", page, i, r.Data, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if refused == 0 {
		t.Fatalf("none of %d leaf pages was refused when overwritten", len(leaves))
	}
	t.Logf("%d of %d leaf pages tried refused when overwritten; the others were free", refused, (len(leaves)+step-1)/step)
}

// filledFile makes a store in dir of 2,000 writes, write(0) to write(1999),
// closes it (a checkpoint: all in the bbolt file), and returns the file's
// path and its bytes.
func filledFile(t *testing.T, dir string, write func(i int) api.Write) (string, []byte) {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, err := s.Write(context.Background(), []api.Write{write(i)}); err != nil {
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
	return file, data
}
