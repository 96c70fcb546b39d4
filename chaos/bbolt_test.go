package chaos

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmbeddedDamagedDB damages the bbolt file of a cleanly stopped
// server (its log checkpointed into it) in three ways: cut to half its
// size, both meta pages overwritten, a page in the middle overwritten. The
// server either refuses to start, exiting 1 with an error that names the
// file (never a panic), or starts and serves every acknowledged write.
func TestEmbeddedDamagedDB(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(data []byte) []byte
	}{
		{"cut in half", func(d []byte) []byte { return d[:used(d)/2] }},
		{"meta pages overwritten", func(d []byte) []byte {
			for i := 16; i < 2*4096 && i < len(d); i++ { // past the page headers
				if i%4096 >= 16 {
					d[i] = 0xa5
				}
			}
			return d
		}},
		{"a leaf page in the middle overwritten", func(d []byte) []byte {
			var leaves []int
			for off := 2 * 4096; off+4096 <= len(d); off += 4096 {
				if binary.LittleEndian.Uint16(d[off+8:]) == 0x02 { // bbolt's leaf flag
					leaves = append(leaves, off)
				}
			}
			if len(leaves) == 0 {
				panic("no leaf page")
			}
			page := leaves[len(leaves)/2]
			for i := page + 16; i < page+4096; i++ {
				d[i] = 0xff
			}
			return d
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, acked := crashed(t, pick(1000, 5000), true)
			file := filepath.Join(dir, "switchboard.db")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, c.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			p := launch(t, embEnv(dir))
			if err := p.waitListening(patience); err != nil {
				code := p.exitCode(t, patience)
				if code != 1 || !strings.Contains(p.out.String(), "switchboard: DATA_DIR: open data directory") || strings.Contains(p.out.String(), "panic") {
					t.Errorf("on a damaged file the server exited %d, saying %.1000s; want 1 and the data directory named", code, p.out.String())
				}
				t.Logf("refused to start, exit %d: %.300s", code, lastLine(p.out.String()))
				return
			}
			lost, first := countLost(p.URL, acked)
			select {
			case <-p.exited:
				t.Errorf("the server died serving reads: %v %.2000s", p.err, p.out.String())
			default:
			}
			if lost > 0 {
				t.Errorf("the server started on a damaged file and %d of %d acknowledged writes are gone (the first: %s)", lost, len(acked), first)
			} else {
				t.Logf("started and serves all %d acknowledged writes", len(acked))
			}
		})
	}
}

// used returns the length of data up to its last byte that is not zero.
func used(d []byte) int {
	n := len(d)
	for n > 0 && d[n-1] == 0 {
		n--
	}
	return n
}
