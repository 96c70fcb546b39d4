package dbtest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// Values whose keys are not sorted: a backend must give back the very bytes
// that Apply returned, not a normalised copy.
const (
	docV1 = `{"b":1,"a":[true,"x"]}`
	docV2 = `"now a string"`
	docV3 = `{"z":{"y":2.50},"a":null}`
)

func recordTests() []test {
	return []test{
		{"GetMissing", testGetMissing},
		{"SetAndGet", testSetAndGet},
		{"DataBytes", testDataBytes},
		{"ApplySeesCurrent", testApplySeesCurrent},
		{"Patch", testPatch},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
	}
}

func conditionTests() []test {
	return []test{
		{"IfMatch", testIfMatch},
		{"IfMatchMissing", testIfMatchMissing},
		{"IfMatchDeleted", testIfMatchDeleted},
		{"IfMatchDelete", testIfMatchDelete},
		{"IfNoneMatch", testIfNoneMatch},
	}
}

func testGetMissing(t *testing.T, s api.Store) {
	wantMissing(t, s, "nope")
	wantMissing(t, s, "a/b/c")
}

// A set creates version 1, the next one makes version 2, and the data comes
// back byte for byte, from Write, Get and Changes alike.
func testSetAndGet(t *testing.T, s api.Store) {
	c1 := mustWrite(t, s, set("doc", docV1))[0]
	wantChange(t, c1, api.KindSet, "doc", 1, docV1)
	wantRecord(t, s, "doc", 1, docV1)

	c2 := mustWrite(t, s, set("doc", docV2))[0]
	wantChange(t, c2, api.KindSet, "doc", 2, docV2)
	if c2.Seq <= c1.Seq {
		t.Errorf("second change has Seq %d, not after the first's %d", c2.Seq, c1.Seq)
	}
	wantRecord(t, s, "doc", 2, docV2)

	c3 := mustWrite(t, s, set("other", `42`))[0]
	wantChange(t, c3, api.KindSet, "other", 1, `42`)
	wantRecord(t, s, "doc", 2, docV2)
	wantSameChanges(t, changesAfter(t, s, 0), []api.Change{c1, c2, c3})
}

// Data is kept byte for byte wherever it comes back: no re-encoding, no
// HTML escaping, no unescaping, no number normalisation, no key sorting.
func testDataBytes(t *testing.T, s api.Store) {
	values := []string{
		`{"html":"<a href=\"x\">&amp;</a>","z":1,"a":[1.50,-0e3,1E+2]}`,
		`["\u00e9","é","\u2028","` + "\u2028\u2029" + `","\ud83d\ude00","😀","\/"]`,
		`"<script>&</script>"`,
	}
	for i, v := range values {
		name := fmt.Sprintf("doc/%d", i)
		c := mustWrite(t, s, set(name, v))[0]
		wantChange(t, c, api.KindSet, name, 1, v)
		wantRecord(t, s, name, 1, v)
		_, recs, err := s.Snapshot(t.Context(), []string{name})
		if err != nil || len(recs) != 1 || string(recs[0].Data) != v {
			t.Errorf("Snapshot(%q) = %+v, %v; want data %s", name, recs, err, v)
		}
		e := mustWrite(t, s, event(name, v, "u"))[0]
		if string(e.Data) != v {
			t.Errorf("event change data = %s, want %s", e.Data, v)
		}
		log := changesAfter(t, s, c.Seq-1)
		if len(log) != 2 {
			t.Fatalf("Changes after %d = %s; want the set and the event", c.Seq-1, brief(log))
		}
		for _, c := range log {
			if string(c.Data) != v {
				t.Errorf("Changes: the %s change of %q has data\n  %q, want\n  %q", c.Kind, name, c.Data, v)
			}
		}
	}
}

// probe is a write whose Apply remembers what it was given and returns
// next.
type probe struct {
	calls   int
	current json.RawMessage
	isNil   bool
	exists  bool
}

func (p *probe) write(kind api.Kind, name, next string) api.Write {
	return api.Write{Kind: kind, Name: name, Apply: func(cur json.RawMessage, exists bool) (json.RawMessage, error) {
		p.calls++
		p.current = append(json.RawMessage(nil), cur...)
		p.isNil = cur == nil
		p.exists = exists
		return json.RawMessage(next), nil
	}}
}

// want checks the last call of Apply (a store may call it more than once,
// for example when it retries a transaction).
func (p *probe) want(t *testing.T, current string, exists bool) {
	t.Helper()
	switch {
	case p.calls == 0:
		t.Errorf("Apply was not called")
	case !exists && (!p.isNil || p.exists):
		t.Errorf("Apply got (%q, nil %v, %v), want (nil, false) for a missing record", p.current, p.isNil, p.exists)
	case exists && (string(p.current) != current || !p.exists):
		t.Errorf("Apply got (%s, %v), want (%s, true)", p.current, p.exists, current)
	}
}

func testApplySeesCurrent(t *testing.T, s api.Store) {
	var p probe
	mustWrite(t, s, p.write(api.KindSet, "doc", docV1))
	p.want(t, "", false)

	p = probe{}
	mustWrite(t, s, p.write(api.KindSet, "doc", docV3))
	p.want(t, docV1, true)
	wantRecord(t, s, "doc", 2, docV3)
}

// A KindPatch write is recorded as a patch; like a path write, it may
// create the record (Apply decides from exists), and a write that creates
// it is recorded as a set: a record's first value is set, whatever wrote
// it.
func testPatch(t *testing.T, s api.Store) {
	var p probe
	c1 := mustWrite(t, s, p.write(api.KindPatch, "doc", docV1))[0]
	p.want(t, "", false)
	wantChange(t, c1, api.KindSet, "doc", 1, docV1)

	p = probe{}
	c2 := mustWrite(t, s, p.write(api.KindPatch, "doc", docV3))[0]
	p.want(t, docV1, true)
	wantChange(t, c2, api.KindPatch, "doc", 2, docV3)
	wantRecord(t, s, "doc", 2, docV3)
	wantSameChanges(t, changesAfter(t, s, 0), []api.Change{c1, c2})
}

// A delete is a change whose version follows the record's last one; the
// record is gone, and a later set continues after the delete's version
// (tombstones.go has more).
func testDelete(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1))
	c2 := mustWrite(t, s, set("doc", docV2))[0]
	mustWrite(t, s, set("keep", `1`))

	d := mustWrite(t, s, del("doc"))[0]
	if d.Seq <= c2.Seq || d.Kind != api.KindDelete || d.Name != "doc" || d.Version != 3 {
		t.Errorf("delete change = {Seq %d %s %q v%d}, want {Seq > %d delete \"doc\" v3}", d.Seq, d.Kind, d.Name, d.Version, c2.Seq)
	}
	wantMissing(t, s, "doc")
	wantRecord(t, s, "keep", 1, `1`)

	var p probe
	c := mustWrite(t, s, p.write(api.KindSet, "doc", docV3))[0]
	p.want(t, "", false)
	wantChange(t, c, api.KindSet, "doc", 4, docV3)
	wantRecord(t, s, "doc", 4, docV3)
}

func testDeleteMissing(t *testing.T, s api.Store) {
	_, err := s.Write(t.Context(), []api.Write{del("nope")})
	wantError(t, err, api.CodeNotFound)
	wantNoChanges(t, s, 0)

	mustWrite(t, s, set("doc", docV1))
	d := mustWrite(t, s, del("doc"))[0]
	_, err = s.Write(t.Context(), []api.Write{del("doc")})
	wantError(t, err, api.CodeNotFound)
	wantNoChanges(t, s, d.Seq)
}

// IfMatch writes at that version only; a mismatch is a VERSION_CONFLICT
// that tells the current version and changes nothing.
func testIfMatch(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1))
	head := mustWrite(t, s, set("doc", docV2))[0].Seq

	for _, v := range []int64{1, 3, -1} { // a negative IfMatch matches no version
		_, err := s.Write(t.Context(), []api.Write{ifMatch(set("doc", docV3), v)})
		wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 2)
	}
	wantRecord(t, s, "doc", 2, docV2)
	wantNoChanges(t, s, head)

	c := mustWrite(t, s, ifMatch(set("doc", docV3), 2))[0]
	wantChange(t, c, api.KindSet, "doc", 3, docV3)
	wantRecord(t, s, "doc", 3, docV3)
}

// IfMatch on a missing record conflicts at version 0, whatever the version
// asked (a negative one matches none, not even a missing record).
func testIfMatchMissing(t *testing.T, s api.Store) {
	for _, v := range []int64{1, -1} {
		_, err := s.Write(t.Context(), []api.Write{ifMatch(set("ghost", docV1), v)})
		wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 0)
	}
	wantMissing(t, s, "ghost")
	wantNoChanges(t, s, 0)
}

// A deleted record is at version 0 for IfMatch: neither its last version
// nor the delete's matches.
func testIfMatchDeleted(t *testing.T, s api.Store) {
	mustWrite(t, s, set("doc", docV1))
	head := mustWrite(t, s, del("doc"))[0].Seq
	for _, v := range []int64{1, 2} {
		_, err := s.Write(t.Context(), []api.Write{ifMatch(set("doc", docV2), v)})
		wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 0)
	}
	wantMissing(t, s, "doc")
	wantNoChanges(t, s, head)
}

func testIfMatchDelete(t *testing.T, s api.Store) {
	head := mustWrite(t, s, set("doc", docV1))[0].Seq
	_, err := s.Write(t.Context(), []api.Write{ifMatch(del("doc"), 2)})
	wantField(t, wantError(t, err, api.CodeVersionConflict), "currentVersion", 1)
	wantRecord(t, s, "doc", 1, docV1)
	wantNoChanges(t, s, head)

	d := mustWrite(t, s, ifMatch(del("doc"), 1))[0]
	if d.Kind != api.KindDelete || d.Version != 2 {
		t.Errorf("delete change = {%s v%d}, want {delete v2}", d.Kind, d.Version)
	}
	wantMissing(t, s, "doc")
}

// IfNoneMatch creates only; on an existing record it is a VERSION_CONFLICT
// (whose currentVersion, if the store gives one, is right).
func testIfNoneMatch(t *testing.T, s api.Store) {
	c := mustWrite(t, s, ifNoneMatch(set("doc", docV1)))[0]
	wantChange(t, c, api.KindSet, "doc", 1, docV1)

	_, err := s.Write(t.Context(), []api.Write{ifNoneMatch(set("doc", docV2))})
	e := wantError(t, err, api.CodeVersionConflict)
	if _, ok := e.Fields["currentVersion"]; ok {
		wantField(t, e, "currentVersion", 1)
	}
	wantRecord(t, s, "doc", 1, docV1)
	wantNoChanges(t, s, c.Seq)

	// After a delete the record may be created again, after the
	// delete's version.
	mustWrite(t, s, del("doc"))
	c = mustWrite(t, s, ifNoneMatch(set("doc", docV3)))[0]
	wantChange(t, c, api.KindSet, "doc", 3, docV3)
}
