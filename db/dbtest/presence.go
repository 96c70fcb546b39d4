package dbtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

func presenceTests() []test {
	return []test{
		{"PutAndOnline", testPresencePut},
		{"Remove", testPresenceRemove},
		{"Expiry", testPresenceExpiry},
		{"Expire", testPresenceExpire},
		{"Concurrent", testPresenceConcurrent},
	}
}

// presenceT0 is the suite's clock for presence: every time is t0 plus an
// offset, so that nothing waits on the wall clock.
func presenceT0() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func putPresence(t *testing.T, s api.Store, instance string, expires time.Time, users ...string) {
	t.Helper()
	if err := s.PutPresence(t.Context(), instance, users, expires); err != nil {
		t.Fatalf("PutPresence(%q, %q): %v", instance, users, err)
	}
}

func removePresence(t *testing.T, s api.Store, instance string, users ...string) {
	t.Helper()
	if err := s.RemovePresence(t.Context(), instance, users); err != nil {
		t.Fatalf("RemovePresence(%q, %q): %v", instance, users, err)
	}
}

// wantOnline checks Online(now, users) against want, in order.
func wantOnline(t *testing.T, s api.Store, now time.Time, users []string, want ...string) {
	t.Helper()
	got, err := s.Online(t.Context(), now, users)
	if err != nil {
		t.Fatalf("Online(%v, %q): %v", now, users, err)
	}
	if want == nil {
		want = []string{}
	}
	if got == nil || !slices.Equal(got, want) {
		t.Errorf("Online(%v, %q) = %#v, want %#v", now, users, got, want)
	}
}

// Users are online while a row counts them, each listed once in byte
// order, whichever instance holds them; a filter keeps only its users.
func testPresencePut(t *testing.T, s api.Store) {
	t0 := presenceT0()
	later := t0.Add(time.Minute)
	wantOnline(t, s, t0, nil)
	putPresence(t, s, "i1", later, "bob", "alice", "bob")
	putPresence(t, s, "i2", later, "alice", "Zed", "émile", "carol")
	putPresence(t, s, "i2", later) // no users: no change
	wantOnline(t, s, t0, nil, "Zed", "alice", "bob", "carol", "émile")
	wantOnline(t, s, t0, []string{"carol", "dave", "alice", "carol"}, "alice", "carol")
	wantOnline(t, s, t0, []string{"dave"})
	wantOnline(t, s, t0, []string{})
}

// A user goes offline when the last row that counts them is removed;
// removing rows that do not exist is no error and changes nothing.
func testPresenceRemove(t *testing.T, s api.Store) {
	t0 := presenceT0()
	later := t0.Add(time.Minute)
	putPresence(t, s, "i1", later, "alice", "bob")
	putPresence(t, s, "i2", later, "alice")
	removePresence(t, s, "i1", "alice")
	wantOnline(t, s, t0, nil, "alice", "bob")
	removePresence(t, s, "i2", "alice", "nobody")
	wantOnline(t, s, t0, nil, "bob")
	removePresence(t, s, "i3", "bob")
	removePresence(t, s, "i1")
	wantOnline(t, s, t0, nil, "bob")
	removePresence(t, s, "i1", "bob")
	wantOnline(t, s, t0, nil)
	putPresence(t, s, "i1", later, "bob")
	wantOnline(t, s, t0, nil, "bob")
}

// A row counts until its expiry (not at it); putting it again sets its
// expiry, later or earlier.
func testPresenceExpiry(t *testing.T, s api.Store) {
	t0 := presenceT0()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	putPresence(t, s, "i1", at(10), "alice", "bob")
	putPresence(t, s, "i2", at(20), "bob")
	wantOnline(t, s, at(9), nil, "alice", "bob")
	wantOnline(t, s, at(10), nil, "bob")
	wantOnline(t, s, at(10), []string{"alice", "bob"}, "bob")
	wantOnline(t, s, at(20), nil)
	putPresence(t, s, "i1", at(30), "alice") // renewed after it ran out
	wantOnline(t, s, at(25), nil, "alice")
	putPresence(t, s, "i1", at(5), "alice") // shortened
	wantOnline(t, s, at(6), nil, "bob")
	wantOnline(t, s, at(4), nil, "alice", "bob")
}

// ExpirePresence removes the rows that expire at or before its time, and
// only those.
func testPresenceExpire(t *testing.T, s api.Store) {
	t0 := presenceT0()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	putPresence(t, s, "i1", at(10), "alice", "bob")
	putPresence(t, s, "i2", at(20), "bob", "carol")
	if err := s.ExpirePresence(t.Context(), at(10)); err != nil {
		t.Fatalf("ExpirePresence: %v", err)
	}
	// Seen from before the expiry, the rows removed no longer count.
	wantOnline(t, s, t0, nil, "bob", "carol")
	removePresence(t, s, "i2", "bob")
	wantOnline(t, s, t0, nil, "carol")
	if err := s.ExpirePresence(t.Context(), at(30)); err != nil {
		t.Fatalf("ExpirePresence: %v", err)
	}
	wantOnline(t, s, t0, nil)
}

// Many instances put and remove overlapping users at once while readers
// read: no call fails, a reader sees each user once and in order, and the
// end state is the union of what each instance last wrote.
func testPresenceConcurrent(t *testing.T, s api.Store) {
	const instances, ops, users = 8, 60, 12
	t0 := presenceT0()
	later := t0.Add(time.Hour)
	final := make([]map[string]bool, instances)
	var wg sync.WaitGroup
	errs := make(chan error, instances*2)
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst := fmt.Sprintf("instance-%d", i)
			mine := map[string]bool{}
			for range ops {
				var batch []string
				for range 1 + rand.IntN(3) {
					batch = append(batch, fmt.Sprintf("user-%02d", rand.IntN(users)))
				}
				var err error
				if rand.IntN(3) == 0 {
					err = s.RemovePresence(t.Context(), inst, batch)
					for _, u := range batch {
						delete(mine, u)
					}
				} else {
					err = s.PutPresence(t.Context(), inst, batch, later)
					for _, u := range batch {
						mine[u] = true
					}
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", inst, err)
					return
				}
			}
			final[i] = mine
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.Online(t.Context(), t0, nil)
				if err != nil {
					errs <- fmt.Errorf("Online: %w", err)
					return
				}
				if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
					errs <- fmt.Errorf("Online = %q: not sorted, or a user twice", got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	union := map[string]bool{}
	for _, m := range final {
		for u := range m {
			union[u] = true
		}
	}
	var want []string
	for u := range union {
		want = append(want, u)
	}
	slices.Sort(want)
	wantOnline(t, s, t0, nil, want...)
}
