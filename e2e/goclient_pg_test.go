package e2e

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api/client"
)

// TestPGGoClientResumeAcrossInstances: two instances on one Postgres
// database; four Go client streams reach instance A through a proxy, a
// writer writes on B all along. A stops; the proxy answers 502 and then
// sends the streams to B, where they resume with their last id and the
// subscriptions added on A. Every stream delivers every version of the
// record, every collection member and every event exactly once, in
// order, with no gap across the move.
func TestPGGoClientResumeAcrossInstances(t *testing.T) {
	_, srv := pgServers(t, 2, map[string]string{"STREAM_RETRY": "50ms"})
	a, b := srv[0], srv[1]
	proxy := newSwitchProxy(t, a.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := client.NewClient(proxy.URL)
	onB := client.NewClient(b.URL)

	const n = 4
	streams := make([]*client.Stream, n)
	got := make([]*gotFrames, n)
	for i := range streams {
		s, err := c.Stream(ctx, client.RecordSub("mix/0"), client.CollectionSub("coll/"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// Added on A: B must know them from the store.
		if err := s.Add(ctx, client.PathSub("mix/0", "w"), client.EventSub("ev/*")); err != nil {
			t.Fatal(err)
		}
		streams[i], got[i] = s, collect(s)
	}
	for i, g := range got {
		g.wait(t, "stream "+strconv.Itoa(i)+"'s snapshots", 5*time.Second, func(fs []client.Frame) bool {
			return len(recordFrames(fs, "mix/0", "w")) == 1 && len(framesOf(fs, "synced")) == 1
		})
	}

	var mu sync.Mutex
	var last int64
	var events []string
	colls := 0
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var r *client.Record
			var err error
			if i%2 == 0 {
				r, err = onB.PutPath(ctx, "mix/0", "w", i, client.Cond{})
			} else {
				r, err = onB.Put(ctx, "mix/0", map[string]int{"w": i - 1, "i": i}, client.Cond{})
			}
			if err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			var id string
			if i%4 == 0 {
				if id, err = onB.Emit(ctx, "ev/"+strconv.Itoa(i), i); err != nil {
					t.Errorf("event %d: %v", i, err)
					return
				}
			}
			if i%10 == 0 {
				if _, err = onB.Put(ctx, "coll/"+strconv.Itoa(i), i, client.Cond{}); err != nil {
					t.Errorf("collection member %d: %v", i, err)
					return
				}
			}
			mu.Lock()
			last = r.Version
			if id != "" {
				events = append(events, id)
			}
			if i%10 == 0 {
				colls++
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	// The proxy's new connections go nowhere (502) while A stops: the
	// streams it carries end with A's drain and meet 502 when they retry.
	proxy.point("http://127.0.0.1:1")
	a.Stop(t)
	for deadline := time.Now().Add(10 * time.Second); proxy.bad.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the writes go on while the streams meet 502
	proxy.point(b.URL)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	writer.Wait()
	if t.Failed() {
		return
	}
	if proxy.bad.Load() == 0 {
		t.Error("no stream met a 502 while A was down")
	}

	want := make([]int64, 0, last+1)
	for v := range last + 1 {
		want = append(want, v)
	}
	for i, g := range got {
		fs := g.wait(t, "stream "+strconv.Itoa(i)+": every write", 20*time.Second, func(fs []client.Frame) bool {
			r := recordFrames(fs, "mix/0", "")
			return len(r) > 0 && r[len(r)-1].Version == last && len(framesOf(fs, "event")) >= len(events)
		})
		time.Sleep(50 * time.Millisecond)
		fs = g.all()
		if v := versionsOf(recordFrames(fs, "mix/0", "")); !reflect.DeepEqual(v, want) {
			t.Errorf("stream %d: mix/0 versions %v, want 0..%d once each", i, v, last)
		}
		pv := versionsOf(recordFrames(fs, "mix/0", "w"))
		for j := 1; j < len(pv); j++ {
			if pv[j] <= pv[j-1] {
				t.Errorf("stream %d: path versions out of order or doubled: %v", i, pv)
				break
			}
		}
		var ids []string
		for _, f := range framesOf(fs, "event") {
			e, _ := f.AsEvent()
			ids = append(ids, e.ID)
		}
		if !reflect.DeepEqual(ids, events) {
			t.Errorf("stream %d: event ids %v, want %v", i, ids, events)
		}
		members := 0
		for _, f := range fs {
			if r, err := f.AsRecord(); err == nil && r.Op == "set" && len(r.Name) > 5 && r.Name[:5] == "coll/" {
				members++
			}
		}
		if members != colls {
			t.Errorf("stream %d: %d collection members created, want %d", i, members, colls)
		}
		if r := len(framesOf(fs, "ready")); r < 2 {
			t.Errorf("stream %d: %d ready frames, want a move to B", i, r)
		}
		if len(framesOf(fs, "reset")) > 0 {
			t.Errorf("stream %d: reset on B: %s", i, dump(framesOf(fs, "reset")))
		}
	}
	t.Logf("%d versions, %d events, %d members; the proxy answered 502 %d times", last, len(events), colls, proxy.bad.Load())
}
