package dbtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

func revokeTests() []test {
	return []test{
		{"RevokeAndRead", testRevokeAndRead},
		{"RevokeAgain", testRevokeAgain},
		{"RevokePages", testRevokePages},
		{"RevokeBadInput", testRevokeBadInput},
		{"RevokeConcurrent", testRevokeConcurrent},
		{"RevokeTrim", testRevokeTrim},
	}
}

// revocationsAfter reads every revocation after after, page by page,
// checking that positions increase.
func revocationsAfter(t *testing.T, s api.Store, after int64) []api.Revocation {
	t.Helper()
	var all []api.Revocation
	for {
		rs, err := s.Revocations(t.Context(), after, 7)
		if err != nil {
			t.Fatalf("Revocations(%d, 7): %v", after, err)
		}
		if len(rs) > 7 {
			t.Fatalf("Revocations(%d, 7) returned %d", after, len(rs))
		}
		if len(rs) == 0 {
			return all
		}
		for _, r := range rs {
			if r.Seq <= after {
				t.Fatalf("Revocations after %d returned position %d: %+v", after, r.Seq, rs)
			}
			after = r.Seq
		}
		all = append(all, rs...)
	}
}

func mustRevoke(t *testing.T, s api.Store, jti string, until time.Time) {
	t.Helper()
	if err := s.Revoke(t.Context(), jti, until); err != nil {
		t.Fatalf("Revoke(%q): %v", jti, err)
	}
}

// wantRevocations checks the jtis and untils of rs (untils within a
// millisecond: a backend may keep times more coarsely).
func wantRevocations(t *testing.T, rs []api.Revocation, want ...api.Revocation) {
	t.Helper()
	ok := len(rs) == len(want)
	for i := 0; ok && i < len(rs); i++ {
		ok = rs[i].JTI == want[i].JTI && rs[i].Until.Sub(want[i].Until).Abs() <= time.Millisecond
	}
	if !ok {
		t.Errorf("revocations = %s, want %s", briefRevocations(rs), briefRevocations(want))
	}
}

func briefRevocations(rs []api.Revocation) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, " {%d %q %s}", r.Seq, r.JTI, r.Until.Format(time.RFC3339Nano))
	}
	return "[" + b.String() + " ]"
}

// testRevokeAndRead: revocations come back in the order they were made,
// and a read after a position returns only what came after it: the
// catch-up of an instance that read up to there.
func testRevokeAndRead(t *testing.T, s api.Store) {
	if rs := revocationsAfter(t, s, 0); len(rs) != 0 {
		t.Fatalf("a new store has revocations: %s", briefRevocations(rs))
	}
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	a := api.Revocation{JTI: "token-a", Until: until}
	b := api.Revocation{JTI: "token-b", Until: until.Add(time.Minute)}
	mustRevoke(t, s, a.JTI, a.Until)
	mustRevoke(t, s, b.JTI, b.Until)
	all := revocationsAfter(t, s, 0)
	wantRevocations(t, all, a, b)
	if len(all) != 2 {
		t.FailNow()
	}
	wantRevocations(t, revocationsAfter(t, s, all[0].Seq), b)
	wantRevocations(t, revocationsAfter(t, s, all[1].Seq))

	// Caught up at b, an instance then misses wake-ups: one read after b
	// brings everything since.
	var more []api.Revocation
	for i := range 10 {
		r := api.Revocation{JTI: fmt.Sprintf("later-%d", i), Until: until}
		mustRevoke(t, s, r.JTI, r.Until)
		more = append(more, r)
	}
	wantRevocations(t, revocationsAfter(t, s, all[1].Seq), more...)
	if rs, err := s.Revocations(t.Context(), 0, 0); err != nil || len(rs) != 0 {
		t.Errorf("Revocations(0, 0) = %s, %v; want none", briefRevocations(rs), err)
	}
}

// testRevokeAgain: a jti revoked again is one revocation, with the later
// time, at a new position that a reader past the old one sees.
func testRevokeAgain(t *testing.T, s api.Store) {
	t1 := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	t2 := t1.Add(time.Hour)
	mustRevoke(t, s, "tok", t1)
	mustRevoke(t, s, "other", t1)
	first := revocationsAfter(t, s, 0)
	mustRevoke(t, s, "tok", t2)
	again := revocationsAfter(t, s, first[1].Seq)
	wantRevocations(t, again, api.Revocation{JTI: "tok", Until: t2})
	wantRevocations(t, revocationsAfter(t, s, 0), api.Revocation{JTI: "other", Until: t1}, api.Revocation{JTI: "tok", Until: t2})

	// An earlier time does not shorten it.
	mustRevoke(t, s, "tok", t1)
	wantRevocations(t, revocationsAfter(t, s, 0), api.Revocation{JTI: "other", Until: t1}, api.Revocation{JTI: "tok", Until: t2})
}

// testRevokePages: limit bounds a read, and reading on from the last
// position returns the rest.
func testRevokePages(t *testing.T, s api.Store) {
	until := time.Now().Add(time.Hour)
	var want []api.Revocation
	for i := range 25 {
		r := api.Revocation{JTI: fmt.Sprintf("page-%02d", i), Until: until}
		mustRevoke(t, s, r.JTI, r.Until)
		want = append(want, r)
	}
	rs, err := s.Revocations(t.Context(), 0, 10)
	if err != nil || len(rs) != 10 {
		t.Fatalf("Revocations(0, 10) = %d, %v; want 10", len(rs), err)
	}
	wantRevocations(t, rs, want[:10]...)
	wantRevocations(t, revocationsAfter(t, s, rs[9].Seq), want[10:]...)
}

// testRevokeBadInput: what cannot be a token's id, or a revocation
// without an end, is refused with INVALID_PARAMETER and stores nothing;
// reading and trimming a store with no revocation is no error.
func testRevokeBadInput(t *testing.T, s api.Store) {
	until := time.Now().Add(time.Hour)
	for _, c := range []struct {
		name, jti string
		until     time.Time
	}{
		{"empty jti", "", until},
		{"jti too long", strings.Repeat("j", api.MaxJTIBytes+1), until},
		{"jti not UTF-8", "tok\xff", until},
		{"jti with NUL", "to\x00k", until},
		{"zero until", "tok", time.Time{}},
	} {
		err := s.Revoke(t.Context(), c.jti, c.until)
		if !api.IsCode(err, api.CodeInvalidParameter) {
			t.Errorf("%s: Revoke = %v, want INVALID_PARAMETER", c.name, err)
		}
	}
	if rs := revocationsAfter(t, s, 0); len(rs) != 0 {
		t.Errorf("refused revocations were stored: %s", briefRevocations(rs))
	}
	if err := s.TrimRevocations(t.Context(), time.Now()); err != nil {
		t.Errorf("TrimRevocations on no revocation: %v", err)
	}
	mustRevoke(t, s, strings.Repeat("j", api.MaxJTIBytes), until)
	mustRevoke(t, s, "é-ünïcode-jti", until)
	if rs := revocationsAfter(t, s, 0); len(rs) != 2 {
		t.Errorf("revocations = %s, want the longest jti and the unicode one", briefRevocations(rs))
	}
}

// testRevokeConcurrent races many revokers (some on the same jti) against
// readers that each read on from their last position, as an instance
// woken by the Bus does: every reader ends up with every revocation,
// which proves that positions follow commit order (a revocation that
// committed after a reader moved past its position would be lost).
func testRevokeConcurrent(t *testing.T, s api.Store) {
	const writers, each, readers = 16, 12, 4
	until := time.Now().Add(time.Hour)
	done := make(chan struct{})
	seen := make([]map[string]bool, readers)
	var rw sync.WaitGroup
	for i := range readers {
		seen[i] = map[string]bool{}
		rw.Go(func() {
			var after int64
			read := func() {
				rs, err := s.Revocations(t.Context(), after, 5)
				if err != nil {
					t.Errorf("reader %d: Revocations(%d): %v", i, after, err)
					return
				}
				for _, r := range rs {
					if r.Seq <= after {
						t.Errorf("reader %d: position %d after %d", i, r.Seq, after)
					}
					after = r.Seq
					seen[i][r.JTI] = true
				}
			}
			for {
				select {
				case <-done:
					for range writers * each { // the rest, at most one per revocation
						read()
					}
					return
				default:
					read()
				}
			}
		})
	}
	var ww sync.WaitGroup
	for w := range writers {
		ww.Go(func() {
			for i := range each {
				if err := s.Revoke(t.Context(), fmt.Sprintf("w%d-%d", w, i), until); err != nil {
					t.Errorf("Revoke: %v", err)
				}
				if err := s.Revoke(t.Context(), "shared", until.Add(time.Duration(w)*time.Second)); err != nil {
					t.Errorf("Revoke(shared): %v", err)
				}
			}
		})
	}
	ww.Wait()
	close(done)
	rw.Wait()

	all := revocationsAfter(t, s, 0)
	if len(all) != writers*each+1 {
		t.Errorf("%d revocations, want %d (one per jti)", len(all), writers*each+1)
	}
	for _, r := range all {
		if r.JTI == "shared" && r.Until.Sub(until.Add((writers-1)*time.Second)).Abs() > time.Millisecond {
			t.Errorf("shared until %v, want the latest, %v", r.Until, until.Add((writers-1)*time.Second))
		}
	}
	for i := range readers {
		for w := range writers {
			for j := range each {
				if jti := fmt.Sprintf("w%d-%d", w, j); !seen[i][jti] {
					t.Errorf("reader %d, reading on from its last position, never saw %s", i, jti)
				}
			}
		}
	}
}

// testRevokeTrim: TrimRevocations removes the revocations that ended
// before its time and keeps the others; a position is never given twice,
// even that of a trimmed revocation.
func testRevokeTrim(t *testing.T, s api.Store) {
	now := time.Now()
	live := api.Revocation{JTI: "live", Until: now.Add(time.Hour)}
	mustRevoke(t, s, live.JTI, live.Until)
	mustRevoke(t, s, "ended", now.Add(-time.Minute))
	mustRevoke(t, s, "ended-long-ago", now.Add(-24*time.Hour))
	before := revocationsAfter(t, s, 0)
	if err := s.TrimRevocations(t.Context(), now); err != nil {
		t.Fatalf("TrimRevocations: %v", err)
	}
	wantRevocations(t, revocationsAfter(t, s, 0), live)

	mustRevoke(t, s, "ended", now.Add(time.Hour)) // a trimmed jti may come back
	next := revocationsAfter(t, s, before[len(before)-1].Seq)
	wantRevocations(t, next, api.Revocation{JTI: "ended", Until: now.Add(time.Hour)})
	if err := s.TrimRevocations(t.Context(), now.Add(-time.Hour)); err != nil {
		t.Fatalf("TrimRevocations: %v", err)
	}
	wantRevocations(t, revocationsAfter(t, s, 0), live, api.Revocation{JTI: "ended", Until: now.Add(time.Hour)})
}
