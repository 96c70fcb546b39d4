package dbtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Versions never repeat (API.md, Conventions): a deleted record leaves a
// tombstone that keeps its last version, the delete's; creating it again
// continues after it, so that a version never names two values and a
// stale If-Match never matches a new record. Every read treats a tombstone
// as missing.
func tombstoneTests() []test {
	return []test{
		{"VersionContinues", testTombstoneVersionContinues},
		{"InOneBatch", testTombstoneInOneBatch},
		{"StaleIfMatch", testTombstoneStaleIfMatch},
		{"Hidden", testTombstoneHidden},
		{"KeptByTrim", testTombstoneKeptByTrim},
		{"Race", testTombstoneRace},
	}
}

// Each kind of creation continues after the delete: a set, a patch, a
// create-only set.
func testTombstoneVersionContinues(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1), set("doc", docV2))
	d := mustWrite(t, s, del("doc"))[0]
	if d.Version != 3 {
		t.Fatalf("delete at version %d, want 3", d.Version)
	}
	wantChange(t, mustWrite(t, s, set("doc", docV3))[0], api.KindSet, "doc", 4, docV3)
	wantRecord(t, s, "doc", 4, docV3)
	mustWrite(t, s, del("doc")) // 5
	// A patch that creates the record again is a set.
	wantChange(t, mustWrite(t, s, patch("doc", docV1))[0], api.KindSet, "doc", 6, docV1)
	mustWrite(t, s, del("doc")) // 7
	wantChange(t, mustWrite(t, s, ifNoneMatch(set("doc", docV2)))[0], api.KindSet, "doc", 8, docV2)
	wantRecord(t, s, "doc", 8, docV2)

	// Write says which changes created the record.
	cs := mustWrite(t, s, del("doc"), set("doc", docV1), set("doc", docV2), patch("new", docV1))
	for i, want := range []bool{false, true, false, true} {
		if cs[i].Created != want {
			t.Errorf("change %d (%s %s v%d): Created %v, want %v", i, cs[i].Kind, cs[i].Name, cs[i].Version, cs[i].Created, want)
		}
	}

	var versions []int64
	for _, c := range changesAfter(t, s, 0) {
		if c.Name != "doc" {
			continue
		}
		versions = append(versions, c.Version)
	}
	if want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(versions, want) {
		t.Errorf("the log's versions of doc = %v, want %v", versions, want)
	}
}

// A batch that creates, deletes and creates again a record that never
// existed leaves a tombstone too, and so does one that ends with the
// delete.
func testTombstoneInOneBatch(t *testing.T, s api.Store) {
	cs := mustWrite(t, s, set("a", docV1), del("a"), set("a", docV2), set("b", docV1), del("b"))
	for i, want := range []int64{1, 2, 3, 1, 2} {
		if cs[i].Version != want {
			t.Errorf("change %d (%s %s) at version %d, want %d", i, cs[i].Kind, cs[i].Name, cs[i].Version, want)
		}
	}
	wantRecord(t, s, "a", 3, docV2)
	wantMissing(t, s, "b")
	wantChange(t, mustWrite(t, s, set("b", docV3))[0], api.KindSet, "b", 3, docV3)
}

// Neither the version before the delete nor the delete's own matches
// If-Match, before or after the record is created again; If-Match: * and
// If-None-Match see a tombstone as missing.
func testTombstoneStaleIfMatch(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1))
	head := mustWrite(t, s, del("doc"))[0].Seq
	for _, v := range []int64{1, 2} {
		_, err := s.Write(t.Context(), []api.Write{ifMatch(set("doc", docV2), v)})
		wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 0)
	}
	_, err := s.Write(t.Context(), []api.Write{{Kind: api.KindSet, Name: "doc", Cond: api.Cond{IfExists: true}, Apply: constant(docV2)}})
	wantError(t, err, api.CodeVersionConflict)
	_, err = s.Write(t.Context(), []api.Write{ifMatch(del("doc"), 2)})
	wantError(t, err, api.CodeVersionConflict)
	wantNoChanges(t, s, head)

	c := mustWrite(t, s, ifNoneMatch(set("doc", docV3)))[0] // version 3
	for _, v := range []int64{1, 2} {
		_, err := s.Write(t.Context(), []api.Write{ifMatch(set("doc", docV2), v)})
		wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 3)
		_, err = s.Write(t.Context(), []api.Write{ifMatch(del("doc"), v)})
		wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 3)
	}
	wantRecord(t, s, "doc", 3, docV3)
	wantNoChanges(t, s, c.Seq)
	wantChange(t, mustWrite(t, s, ifMatch(set("doc", docV1), 3))[0], api.KindSet, "doc", 4, docV1)
}

// Get, List, ListData and Snapshot show no tombstone, also once the
// deletes are older than the store's recent memory (many writes later),
// and a page is full even when tombstones lie in its range.
func testTombstoneHidden(t *testing.T, s api.Store) {
	var writes, dels []api.Write
	for i := range 40 {
		writes = append(writes, set(fmt.Sprintf("c/%02d", i), `1`))
		if i%4 != 0 {
			dels = append(dels, del(fmt.Sprintf("c/%02d", i)))
		}
	}
	mustWrite(t, s, writes...)
	mustWrite(t, s, dels...)
	check := func(when string) {
		t.Helper()
		want := []string{"c/00", "c/04", "c/08", "c/12", "c/16", "c/20", "c/24", "c/28", "c/32", "c/36"}
		var got []string
		for after := ""; ; {
			recs, err := s.List(t.Context(), "c/", after, 3)
			if err != nil {
				t.Fatalf("%s: List: %v", when, err)
			}
			for _, r := range recs {
				got = append(got, r.Name)
			}
			if len(recs) < 3 {
				break
			}
			after = recs[len(recs)-1].Name
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: List pages of 3 = %v, want %v", when, got, want)
		}
		_, recs, err := s.ListData(t.Context(), "c/", "c/00", 2)
		if err != nil || len(recs) != 2 || recs[0].Name != "c/04" || recs[1].Name != "c/08" {
			t.Errorf("%s: ListData(c/, after c/00, 2) = %+v, %v; want c/04 and c/08", when, recs, err)
		}
		_, snap, err := s.Snapshot(t.Context(), []string{"c/01", "c/04"})
		if err != nil || len(snap) != 2 || snap[0].Version != 0 || snap[0].Data != nil || snap[1].Version != 1 {
			t.Errorf("%s: Snapshot(c/01, c/04) = %+v, %v; want c/01 at version 0 without data, c/04 at 1", when, snap, err)
		}
		wantMissing(t, s, "c/01")
	}
	check("at once")
	// Enough writes for a store that keeps recent changes in memory to
	// move them to its files.
	for i := 0; i < 5000; i += 500 {
		var ws []api.Write
		for j := range 500 {
			ws = append(ws, set(fmt.Sprintf("z/%d", (i+j)%50), `2`))
		}
		mustWrite(t, s, ws...)
	}
	check("5000 writes later")
	wantChange(t, mustWrite(t, s, set("c/01", `3`))[0], api.KindSet, "c/01", 3, `3`)
}

// Trimming the whole log keeps tombstones: the deleted record's next
// version still continues after its delete.
func testTombstoneKeptByTrim(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1), set("other", docV1))
	mustWrite(t, s, del("doc"))
	if err := s.Trim(t.Context(), api.TrimOptions{Before: time.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	wantMissing(t, s, "doc")
	wantChange(t, mustWrite(t, s, set("doc", docV2))[0], api.KindSet, "doc", 3, docV2)
}

// Writers racing to delete and create one record (some in batches that
// create and delete it at once) never give two changes the same version:
// in log order, the record's versions are 1, 2, 3... with no repeat and
// no gap.
func testTombstoneRace(t *testing.T, s api.Store) {
	const writers, rounds = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				var batch []api.Write
				switch (w + i) % 3 {
				case 0:
					batch = []api.Write{set("x", `1`)}
				case 1:
					batch = []api.Write{del("x")}
				default:
					batch = []api.Write{set("x", `2`), del("x")}
				}
				if _, err := s.Write(t.Context(), batch); err != nil && !api.IsCode(err, api.CodeNotFound) {
					t.Errorf("Write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var want int64 = 1
	for _, c := range changesAfter(t, s, 0) {
		if c.Version != want {
			t.Fatalf("change at %d (%s) has version %d, want %d: a version repeated or was skipped", c.Seq, c.Kind, c.Version, want)
		}
		want++
	}
	if want < writers*rounds/3 {
		t.Errorf("only %d changes of x", want-1)
	}
}
