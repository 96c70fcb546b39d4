package embedded

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkLength refuses a bbolt file shorter than its meta page says it is:
// a file cut short (a copy that stopped, a damaged disk). bbolt would map
// it and, walking its pages at open, fault past its end and crash the
// process; bbolt grows the file before a meta page may name the new
// pages, so a crash never leaves a file this short. A file that is new,
// or whose meta pages do not read, is left to bolt.Open.
//
// A meta page is bbolt's page header (16 bytes) and then, in the machine's
// byte order (little-endian on every platform we build for): magic,
// version, page size, flags (uint32 each), the root bucket (16 bytes), the
// free list's page, the number of pages, the transaction id and an FNV-64a
// checksum of what precedes it (uint64 each). Page 0 and page 1 are meta
// pages; bbolt uses the valid one with the higher transaction id.
func checkLength(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // bolt.Open creates it, or says why it cannot
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	var best *boltMeta
	for _, at := range []int64{0, -1} { // page 0, then page 1 (at the page size that page 0 or 4 KiB says)
		if at < 0 {
			at = 4096
			if best != nil {
				at = int64(best.pageSize)
			}
		}
		m, ok := readMeta(f, at)
		if ok && (best == nil || m.txid > best.txid) {
			best = &m
		}
	}
	if best == nil {
		return nil
	}
	if want := int64(best.pages) * int64(best.pageSize); fi.Size() < want {
		return fmt.Errorf("%s is cut short: %d bytes, where its meta page says %d; restore the data directory from a backup", path, fi.Size(), want)
	}
	return nil
}

type boltMeta struct {
	pageSize    uint32
	pages, txid uint64
}

// readMeta reads the meta page at offset at, and whether it is one.
func readMeta(r io.ReaderAt, at int64) (boltMeta, bool) {
	const header, magic, sumAt = 16, 0xED0CDAED, 56
	b := make([]byte, header+sumAt+8)
	if _, err := r.ReadAt(b, at); err != nil {
		return boltMeta{}, false
	}
	m := b[header:]
	h := fnv.New64a()
	h.Write(m[:sumAt])
	if binary.LittleEndian.Uint32(m) != magic || h.Sum64() != binary.LittleEndian.Uint64(m[sumAt:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: binary.LittleEndian.Uint32(m[8:]), pages: binary.LittleEndian.Uint64(m[40:]), txid: binary.LittleEndian.Uint64(m[48:])}, true
}
