package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDisk returns a directory on a tmpfs of size bytes, mounted for the
// test (the test runs as root where mount works), or "" when it cannot be
// mounted here.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Logf("mount a tmpfs: %v", err)
		return ""
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the tmpfs: %v", err)
		}
	})
	return dir
}

// TestEmbeddedDiskFull fills the disk of a running server while it takes
// writes: a small tmpfs with a filler file where mount works (root), else
// a file size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, as a
// full disk fails them with ENOSPC). Once the disk is full, writes are
// refused with a problem (500 INTERNAL, as the README's Limits say),
// /readyz answers 503, reads go on; once there is room again the server
// takes writes (by itself when only a checkpoint failed, else after a
// restart: both documented), and every acknowledged write is there.
func TestEmbeddedDiskFull(t *testing.T) {
	var data, filler string
	var wrap []string
	if disk := smallDisk(t, 32<<20); disk != "" {
		data = filepath.Join(disk, "data")
		filler = filepath.Join(disk, "filler")
	} else {
		data = t.TempDir()
		wrap = []string{"/bin/sh", "-c", `ulimit -S -f 81920 && exec "$0"`} // 40 MiB (in 512-byte blocks; 80 in a shell that counts kB): bbolt grows its file 16 MiB at a time
		t.Log("a file size limit stands for the full disk")
	}
	p := launch(t, embEnv(data), wrap...)
	if err := p.waitListening(patience); err != nil {
		t.Fatal(err)
	}
	p.waitReady(t, http.StatusOK)
	if filler != "" {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(filler), &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if err := os.WriteFile(filler, make([]byte, free-pick[int64](3<<20, 6<<20)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	acked, refusal := writeUnique(p.URL, 0, 1<<20, 2000, 8)
	if len(acked) == 0 || refusal.Status == 0 {
		t.Fatalf("%d writes acknowledged, then %v", len(acked), refusal)
	}
	var prob struct{ Code string }
	json.Unmarshal(refusal.Body, &prob)
	t.Logf("disk full after %d acknowledged writes of 2 kB: %d %s", len(acked), refusal.Status, prob.Code)
	if refusal.Status != http.StatusInternalServerError || prob.Code != "INTERNAL" ||
		!strings.HasPrefix(refusal.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("a write on a full disk: %v; want 500 INTERNAL as problem+json", refusal)
	}
	if got := statusOf(p.URL + "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk: %d, want 503", got)
	}
	if a := send(http.MethodGet, p.URL+"/records/"+acked[0].Name, ""); a.Status != http.StatusOK {
		t.Errorf("a read on a full disk: %v", a)
	}
	if a := send(http.MethodPut, p.URL+"/records/after", `{"a":1}`); a.Status/100 == 2 {
		t.Errorf("a write on a full disk was acknowledged: %v", a)
	}

	recovered := false
	if filler != "" {
		os.Remove(filler)
		healed := time.Now()
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if statusOf(p.URL+"/readyz") == http.StatusOK {
				recovered = true
				t.Logf("ready again %v after the disk had room, without a restart", time.Since(healed).Round(time.Millisecond))
				break
			}
		}
	}
	if !recovered {
		p.cmd.Process.Signal(syscall.SIGTERM)
		code := p.exitCode(t, patience)
		t.Logf("restarted on the full disk's data: SIGTERM, exit %d (%s)", code, lastLine(p.out.String()))
		if code != 0 && code != 1 {
			t.Errorf("SIGTERM after a disk full: exit %d\n%.2000s", code, p.out.String())
		}
		p = start(t, embEnv(data))
	}
	checkKept(t, p.URL, acked)
	if more, refusal := writeUnique(p.URL, 1<<21, 100, 2000, 4); len(more) != 100 {
		t.Errorf("writes once the disk has room: %v", refusal)
	}
}
