package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/internal/testkit"
)

// TestSoak runs 2 instances on Postgres with many streams (each on one of
// the two) under a steady rate of record writes and events, sampling each
// instance's RSS, open files and goroutines: after a warm-up, open files
// and goroutines stay flat (the slopes are reported); at the end every
// acknowledged write is in the log and every stream delivered exactly
// the log's changes for its subscriptions. Short: 200 streams, 50
// writes/s and 100 events/s for 30 s; CHAOS=long: 2,000 streams, 200
// writes/s and 500 events/s for 10 minutes.
func TestSoak(t *testing.T) {
	nStreams, writesPerSec, eventsPerSec := pick(200, 2000), pick(50, 200), pick(100, 500)
	length, every := pick(30*time.Second, 10*time.Minute), pick(2*time.Second, 10*time.Second)
	const records, groups = 1000, 200
	db := postgres(t).NewDatabase(t)
	procs := []*proc{start(t, pgEnv(db)), start(t, pgEnv(db))}
	bases := []string{procs[0].URL, procs[1].URL}

	stop := make(chan struct{})
	var readers sync.WaitGroup
	followers := make([]*testkit.Tracker, nStreams)
	for i := range followers {
		f := testkit.NewTracker("stream "+strconv.Itoa(i),
			[]string{"k/" + strconv.Itoa(rand.IntN(records)), "k/" + strconv.Itoa(rand.IntN(records))},
			[]string{"ev/" + strconv.Itoa(i%groups) + "/*"}, "Authorization", "Bearer "+token(t, "u"+strconv.Itoa(i)))
		s, err := f.Connect(bases[i%2])
		if err != nil {
			t.Fatal(err)
		}
		followers[i] = f
		follow(f, s, []string{bases[(i+1)%2], bases[i%2]}, stop, &readers)
	}

	l := newLedger()
	auth := "Bearer " + token(t, "writer")
	work, stopLoad := make(chan func(), 1024), make(chan struct{})
	var writers, pacers sync.WaitGroup
	for range 32 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for f := range work {
				f()
			}
		}()
	}
	pace := func(perSec int, op func(i int)) {
		pacers.Add(1)
		go func() {
			defer pacers.Done()
			tick := time.NewTicker(time.Second / time.Duration(perSec))
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				case <-tick.C:
					select {
					case work <- func() { op(i) }:
					default: // the server is behind: the rate drops, and the samples say so
					}
				}
			}
		}()
	}
	h := []string{"Authorization", auth}
	pace(writesPerSec, func(i int) {
		name, data := "k/"+strconv.Itoa(rand.IntN(records)), fmt.Sprintf(`{"i":%d}`, i)
		a := send(http.MethodPut, bases[i%2]+"/records/"+name, data, h...)
		if a.Status/100 != 2 {
			l.refuse(a)
			return
		}
		var r struct{ Version int64 }
		json.Unmarshal(a.Body, &r)
		l.ack(ack{Name: name, Version: r.Version, Data: data})
	})
	pace(eventsPerSec, func(i int) {
		name, data := "ev/"+strconv.Itoa(rand.IntN(groups))+"/e", strconv.Itoa(i)
		a := send(http.MethodPost, bases[i%2]+"/events/"+name, data, h...)
		if a.Status != http.StatusAccepted {
			l.refuse(a)
			return
		}
		var ev struct{ ID string }
		json.Unmarshal(a.Body, &ev)
		seq, _ := strconv.ParseInt(ev.ID, 10, 64)
		l.ack(ack{Name: name, Seq: seq, Data: data})
	})

	began := time.Now()
	var at []float64
	series := make([][]usage, len(procs))
	for time.Since(began) < length {
		time.Sleep(every)
		at = append(at, time.Since(began).Minutes())
		for i, p := range procs {
			series[i] = append(series[i], p.sample(t))
		}
	}
	close(stopLoad)
	pacers.Wait()
	close(work)
	writers.Wait()
	elapsed := time.Since(began)
	l.mu.Lock()
	t.Logf("%d streams; %d writes and events acknowledged in %v (%.0f/s; asked for %d/s); refused: %v",
		nStreams, len(l.acks), elapsed.Round(time.Second), float64(len(l.acks))/elapsed.Seconds(), writesPerSec+eventsPerSec, l.refused)
	l.mu.Unlock()

	log := verify(t, db, l)
	ix := testkit.NewIndex(log)
	testkit.CatchUp(followers, ix, patience)
	close(stop)
	readers.Wait()
	frames := 0
	for _, f := range followers {
		want := f.Expect(ix)
		if err := f.Compare(want); err != nil {
			t.Error(err)
		}
		frames += len(want)
	}
	t.Logf("%d streams delivered %d changes, each exactly as the log has them", nStreams, frames)

	warm := len(at) / 3
	for i, s := range series {
		rss, fds, gs := make([]float64, len(s)), make([]float64, len(s)), make([]float64, len(s))
		for j, u := range s {
			rss[j], fds[j], gs[j] = float64(u.RSS)/(1<<20), float64(u.FDs), float64(u.Goroutines)
		}
		t.Logf("instance %d: first %s, last %s; after warm-up, per minute: RSS %+.2f MiB, fds %+.2f, goroutines %+.2f",
			i, s[0], s[len(s)-1], slope(at[warm:], rss[warm:]), slope(at[warm:], fds[warm:]), slope(at[warm:], gs[warm:]))
		maxWarm := func(v []float64) float64 {
			m := 0.0
			for _, x := range v[:warm+1] {
				m = max(m, x)
			}
			return m
		}
		if last := fds[len(fds)-1]; last > maxWarm(fds)*1.1+20 {
			t.Errorf("instance %d: %v open files at the end, at most %v in the warm-up", i, last, maxWarm(fds))
		}
		if last := gs[len(gs)-1]; last > maxWarm(gs)*1.1+20 {
			t.Errorf("instance %d: %v goroutines at the end, at most %v in the warm-up", i, last, maxWarm(gs))
		}
	}
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) float64 {
	n := float64(len(x))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
