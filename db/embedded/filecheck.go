package embedded

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
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

// checkPages reads every key and value of every bucket of the bbolt file
// at path, opened read-only, and returns an error where a page is damaged.
// bbolt trusts its pages: opened for writing with NoFreelistSync it walks
// them in a goroutine of its own (to rebuild the free list), where a
// damaged page panics out of reach of a recover and the process dies with
// a stack dump. Read-only it loads no free list, so the same walk runs
// here, on a goroutine that turns the panic (or a fault on the mapping)
// into an error. It costs one read of the file at start-up, about 40% of
// bbolt's own open. What is not a regular file is left to bolt.Open.
func checkPages(path string) error {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return nil // bolt.Open creates it, or says why it cannot
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("%s is damaged (%v); restore the data directory from a backup", path, r)
			}
		}()
		done <- db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walkBucket(b) })
		})
	}()
	return <-done
}

// walkBucket visits every key and value of b and of the buckets in it.
func walkBucket(b *bolt.Bucket) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		sub := b.Bucket(k)
		if sub == nil {
			return fmt.Errorf("key %q has neither a value nor a bucket", k)
		}
		if err := walkBucket(sub); err != nil {
			return err
		}
	}
	return nil
}
