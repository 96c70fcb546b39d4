package dbtest

import (
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

func listTests() []test {
	return []test{{"PrefixAfterLimit", testList}}
}

func snapshotTests() []test {
	return []test{
		{"Empty", testSnapshotEmpty},
		{"Position", testSnapshotPosition},
	}
}

func changesTests() []test {
	return []test{
		{"Empty", testChangesEmpty},
		{"OrderAndLimit", testChangesOrderAndLimit},
	}
}

// List returns existing records under a prefix, after a cursor, in byte
// order of names, with versions and without data.
func testList(t *testing.T, s api.Store) {
	for _, name := range []string{"a/2", "a/x/y", "ab", "a/10", "a", "a/1", "b/1", "a/3"} {
		mustWrite(t, s, set(name, docV1))
	}
	mustWrite(t, s, set("a/2", docV2), del("a/3"), event("a/4", `1`, ""))

	cases := []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"a/", "", 100, []string{"a/1", "a/10", "a/2", "a/x/y"}},
		{"a/", "", 2, []string{"a/1", "a/10"}},
		{"a/", "a/10", 2, []string{"a/2", "a/x/y"}},
		{"a/", "a/x/y", 2, nil},
		{"a/", "a/15", 10, []string{"a/2", "a/x/y"}}, // the cursor need not exist
		{"a/", "a/1", 1, []string{"a/10"}},
		{"a", "", 100, []string{"a", "a/1", "a/10", "a/2", "a/x/y", "ab"}},
		{"", "", 100, []string{"a", "a/1", "a/10", "a/2", "a/x/y", "ab", "b/1"}},
		{"", "ab", 100, []string{"b/1"}},
		{"zz/", "", 10, nil},
	}
	for _, tc := range cases {
		recs, err := s.List(t.Context(), tc.prefix, tc.after, tc.limit)
		if err != nil {
			t.Errorf("List(%q, %q, %d): %v", tc.prefix, tc.after, tc.limit, err)
			continue
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Name)
			wantVersion := int64(1)
			if r.Name == "a/2" {
				wantVersion = 2
			}
			if r.Version != wantVersion || len(r.Data) != 0 {
				t.Errorf("List(%q, %q, %d): record %q has version %d and data %s, want version %d and no data",
					tc.prefix, tc.after, tc.limit, r.Name, r.Version, r.Data, wantVersion)
			}
		}
		if !equalStrings(got, tc.want) {
			t.Errorf("List(%q, %q, %d) = %q, want %q", tc.prefix, tc.after, tc.limit, got, tc.want)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A snapshot of an empty store is at a position from which Changes sees
// the first change.
func testSnapshotEmpty(t *testing.T, s api.Store) {
	pos, recs, err := s.Snapshot(t.Context(), []string{"doc"})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if len(recs) != 1 || recs[0].Name != "doc" || recs[0].Version != 0 || len(recs[0].Data) != 0 {
		t.Errorf("Snapshot records = %+v, want [{doc 0 nil}]", recs)
	}
	wantNoChanges(t, s, pos)
	c := mustWrite(t, s, set("doc", docV1))
	wantSameChanges(t, changesAfter(t, s, pos), c)
}

// A snapshot's position is the Seq of the last change before it: the
// records are as of that change, and Changes after it returns exactly what
// came later.
func testSnapshotPosition(t *testing.T, s api.Store) {
	mustWrite(t, s, set("a", docV1), set("b", docV1), set("gone", docV1))
	last := mustWrite(t, s, set("a", docV2), del("gone"), event("e", `1`, "u"))
	head := last[len(last)-1].Seq

	names := []string{"b", "missing", "a", "gone"}
	pos, recs, err := s.Snapshot(t.Context(), names)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if pos != head {
		t.Errorf("Snapshot position = %d, want %d, the Seq of the last change", pos, head)
	}
	want := []api.Record{
		{Name: "b", Version: 1, Data: []byte(docV1)},
		{Name: "missing"},
		{Name: "a", Version: 2, Data: []byte(docV2)},
		{Name: "gone"},
	}
	if len(recs) != len(want) {
		t.Fatalf("Snapshot(%q) returned %d records, want %d: %+v", names, len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Name != w.Name || r.Version != w.Version || string(r.Data) != string(w.Data) {
			t.Errorf("Snapshot record %d = {%q v%d %s}, want {%q v%d %s}", i, r.Name, r.Version, r.Data, w.Name, w.Version, w.Data)
		}
	}

	wantNoChanges(t, s, pos)
	later := mustWrite(t, s, set("b", docV3))
	wantSameChanges(t, changesAfter(t, s, pos), later)
}

func testChangesEmpty(t *testing.T, s api.Store) {
	cs, err := s.Changes(t.Context(), 0, 10)
	if err != nil || len(cs) != 0 {
		t.Errorf("Changes(0, 10) on an empty store = %+v, %v; want none and no error", cs, err)
	}
}

// Changes pages through the log in Seq order: after=0 starts at the
// beginning, limit caps each page, and after the head there is nothing.
func testChangesOrderAndLimit(t *testing.T, s api.Store) {
	var written []api.Change
	written = append(written, mustWrite(t, s, set("a", docV1))...)
	written = append(written, mustWrite(t, s, set("b", docV1), event("e", `1`, "u"), set("a", docV2))...)
	written = append(written, mustWrite(t, s, del("b"))...)
	written = append(written, mustWrite(t, s, patch("a", docV3), set("c", `1`))...)
	wantIncreasing(t, written)

	all, err := s.Changes(t.Context(), 0, 100)
	if err != nil {
		t.Fatalf("Changes(0, 100): %v", err)
	}
	wantSameChanges(t, all, written)

	for _, limit := range []int{1, 2, 3, len(written)} {
		var got []api.Change
		var after int64
		for range len(written) + 1 {
			page, err := s.Changes(t.Context(), after, limit)
			if err != nil {
				t.Fatalf("Changes(%d, %d): %v", after, limit, err)
			}
			if len(page) > limit {
				t.Fatalf("Changes(%d, %d) returned %d changes", after, limit, len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		wantSameChanges(t, got, written)
	}

	mid := written[2].Seq
	page, err := s.Changes(t.Context(), mid, 2)
	if err != nil {
		t.Fatalf("Changes(%d, 2): %v", mid, err)
	}
	wantSameChanges(t, page, written[3:5])
	// A position between two changes (Seqs need not be consecutive) is
	// before the next one.
	if gap := written[3].Seq - written[2].Seq; gap > 1 {
		page, err := s.Changes(t.Context(), mid+1, 1)
		if err != nil {
			t.Fatalf("Changes(%d, 1): %v", mid+1, err)
		}
		wantSameChanges(t, page, written[3:4])
	}
	wantNoChanges(t, s, written[len(written)-1].Seq)
}
