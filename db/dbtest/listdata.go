package dbtest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// The pages of a collection's snapshot: ListData.

func listDataTests() []test {
	return []test{
		{"PrefixAfterLimit", testListData},
		{"Pages", testListDataPages},
		{"ConcurrentWrites", testListDataConcurrent},
	}
}

// ListData returns what List returns, with each record's data as written.
func testListData(t *testing.T, s api.Store) {
	for _, name := range []string{"a/2", "a/x/y", "ab", "a/10", "a", "a/1", "b/1", "a/3"} {
		mustWrite(t, s, set(name, `{"n":"`+name+`"}`))
	}
	mustWrite(t, s, set("a/2", docV2), del("a/3"), event("a/4", `1`, ""))
	cases := []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"a/", "", 100, []string{"a/1", "a/10", "a/2", "a/x/y"}},
		{"a/", "a/10", 1, []string{"a/2"}},
		{"a/", "a/15", 10, []string{"a/2", "a/x/y"}},
		{"", "", 100, []string{"a", "a/1", "a/10", "a/2", "a/x/y", "ab", "b/1"}},
		{"zz/", "", 10, nil},
	}
	for _, tc := range cases {
		_, recs, err := s.ListData(t.Context(), tc.prefix, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("ListData(%q, %q, %d): %v", tc.prefix, tc.after, tc.limit, err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Name)
			want, version := `{"n":"`+r.Name+`"}`, int64(1)
			if r.Name == "a/2" {
				want, version = docV2, 2
			}
			if r.Version != version || string(r.Data) != want {
				t.Errorf("ListData(%q, %q, %d): %q is version %d %s, want version %d %s",
					tc.prefix, tc.after, tc.limit, r.Name, r.Version, r.Data, version, want)
			}
		}
		if !equalStrings(got, tc.want) {
			t.Errorf("ListData(%q, %q, %d) = %v, want %v", tc.prefix, tc.after, tc.limit, got, tc.want)
		}
	}
}

// Paging through a collection larger than a backend keeps in memory
// (the embedded store moves its changes into its file every few thousand)
// returns every record once, in order, page boundaries included.
func testListDataPages(t *testing.T, s api.Store) {
	const n, batch = 5000, 500
	for i := 0; i < n; i += batch {
		var ws []api.Write
		for j := i; j < i+batch; j++ {
			ws = append(ws, set(fmt.Sprintf("p/%05d", j), strconv.Itoa(j)))
			if j%7 == 0 {
				ws = append(ws, set(fmt.Sprintf("q/%05d", j), `0`)) // outside the prefix
			}
		}
		mustWrite(t, s, ws...)
	}
	mustWrite(t, s, del("p/00100"), set("p/00200", `"changed"`))
	after, seen := "", 0
	for {
		_, page, err := s.ListData(t.Context(), "p/", after, 97)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if r.Name <= after {
				t.Fatalf("record %q after cursor %q", r.Name, after)
			}
			after = r.Name
			i, _ := strconv.Atoi(r.Name[2:])
			want, version := strconv.Itoa(i), int64(1)
			if i == 200 {
				want, version = `"changed"`, 2
			}
			if i == 100 {
				t.Fatalf("deleted record p/00100 listed")
			}
			if string(r.Data) != want || r.Version != version {
				t.Fatalf("%s is version %d %s, want version %d %s", r.Name, r.Version, r.Data, version, want)
			}
			seen++
		}
	}
	if seen != n-1 {
		t.Fatalf("paged through %d records, want %d", seen, n-1)
	}
}

// While writers create, change and delete records, each page is the
// records of its range exactly as the log up to the page's position left
// them (replayed from the log once the writers stop), and paging returns
// names in strictly increasing order.
func testListDataConcurrent(t *testing.T, s api.Store) {
	const stable = 300
	var ws []api.Write
	for i := range stable {
		ws = append(ws, set(fmt.Sprintf("c/s%04d", i), `"stable"`))
	}
	mustWrite(t, s, ws...)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("c/w%d-%03d", i%3, i%50)
				write := set(name, fmt.Sprintf(`"%d-%d"`, w, i))
				if i%5 == 4 {
					write = del(name)
				}
				s.Write(ctx, []api.Write{write}) // a delete of a missing record fails: fine
			}
		}()
	}
	type page struct {
		after, last string // the range: after the cursor, up to last ("" for the end)
		pos         int64
		recs        []api.Record
	}
	var pages []page
	for round := 0; round < 20; round++ {
		after := ""
		for {
			pos, recs, err := s.ListData(t.Context(), "c/", after, 37)
			if err != nil {
				cancel()
				wg.Wait()
				t.Fatal(err)
			}
			p := page{after: after, pos: pos, recs: recs}
			for _, r := range recs {
				if r.Name <= after {
					t.Errorf("record %q after cursor %q", r.Name, after)
				}
				after = r.Name
			}
			if len(recs) == 37 {
				p.last = after
			}
			pages = append(pages, p)
			if len(recs) < 37 {
				break
			}
		}
	}
	cancel()
	wg.Wait()
	// Replay the log, and compare each page with the state at its position.
	var log []api.Change
	for after := int64(0); ; {
		chs, err := s.Changes(t.Context(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(chs) == 0 {
			break
		}
		log = append(log, chs...)
		after = chs[len(chs)-1].Seq
	}
	slices.SortStableFunc(pages, func(a, b page) int { return cmp.Compare(a.pos, b.pos) })
	state := map[string]string{}
	i := 0
	for _, p := range pages {
		for ; i < len(log) && log[i].Seq <= p.pos; i++ {
			switch ch := log[i]; ch.Kind {
			case api.KindDelete:
				delete(state, ch.Name)
			case api.KindSet, api.KindPatch:
				state[ch.Name] = string(ch.Data)
			}
		}
		var want []string
		for name, data := range state {
			if strings.HasPrefix(name, "c/") && name > p.after && (p.last == "" || name <= p.last) {
				want = append(want, name+" "+data)
			}
		}
		slices.Sort(want)
		var got []string
		for _, r := range p.recs {
			got = append(got, r.Name+" "+string(r.Data))
		}
		if !equalStrings(got, want) {
			t.Fatalf("page after %q read at %d:\n got %v\nwant %v", p.after, p.pos, got, want)
		}
	}
}
