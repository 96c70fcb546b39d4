// Command pgscale measures Switchboard scaled out on one PostgreSQL: it
// starts a durable PostgreSQL (fsync and synchronous commits on) in a
// temporary directory on a free port of 127.0.0.1, runs N Switchboard
// instances as processes on it, and for a bounded time spreads W HTTP
// writers over them (writer i writes to instance i mod N, each writer its
// own record), or sends every write to the first instance ("one"). For
// each row it prints:
//
//   - writes/s: acknowledged writes per second;
//   - w/commit: log entries per write transaction (group commit);
//   - p99: the 99th percentile of a write's HTTP round trip;
//   - inst µs/w: CPU of every instance (user + system, from /proc) per write;
//   - idle µs/c: CPU of an instance that takes no writes and has no
//     subscriber, per commit (rows "one" with N > 1: the average of them);
//   - pg µs/w: CPU of every PostgreSQL process per write;
//   - pg idle µs/c: CPU of the PostgreSQL backends serving one such idle
//     instance (its listener and its pool's connections, found by their
//     client ports), per commit (rows "one" with N > 1, the average);
//   - reads/s, read p50 and p99: with -readers R, R readers GET the
//     writers' records meanwhile (reader i from instance i mod N; with
//     -read-quiet, records that nobody writes), and these are their rate
//     and latency.
//
// The backends of an idle instance are not all it costs PostgreSQL: the
// committing backend signals every listener. So after the rows, for each
// build, number of writers and N > 1, it also prints the difference of
// PostgreSQL's CPU per commit between N instances (writes to one) and
// one instance, divided by N-1: the whole cost of an idle instance to
// PostgreSQL, noisier (a difference of two rows).
//
// CPU time carries over to other machines better than throughput on a
// small shared one. Rows of one run are comparable; run it twice to see
// the noise. `make scale` builds the server and runs it:
//
//	go build -o bin/switchboard . && go run ./cmd/pgscale -bin bin/switchboard
//
// To compare two builds in one sitting, give both (-bin old,new) and a
// number of rounds: for each number of instances, each round runs every
// build's rows in turn, on a fresh database, so that the machine's noise
// falls on both alike.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/db/postgres/pgtest"
)

func main() {
	bins := flag.String("bin", "bin/switchboard", "the switchboard binaries to run, comma-separated: each one's rows in turn; a binary named with the suffix "+peersSuffix+" runs with PEER_URL set (writes forwarded to the sequencer)")
	rounds := flag.Int("rounds", 1, "how many times to run every binary's rows")
	pprofFlag := flag.Bool("pprof", false, "give every instance a pprof listener (DEBUG_ADDR) and print its address")
	server := flag.String("server", "", "a PostgreSQL server's URL to use instead of starting one (its CPU is then not measured)")
	ns := flag.String("instances", "1,4,8", "numbers of instances, one row set each")
	ws := flag.String("writers", "8,64", "numbers of concurrent writers")
	modes := flag.String("modes", "spread,one", "spread: writer i to instance i mod N; one: every write to the first instance")
	dur := flag.Duration("duration", 10*time.Second, "measured time per row")
	warm := flag.Duration("warmup", 2*time.Second, "unmeasured time before each row")
	notifyRate := flag.Int("notify", 0, "instead of writers: for each build and round, start the instances with none of them written to, send them this many notifications of 4-change commits per second straight through PostgreSQL, and print the CPU per notification of an instance and of its PostgreSQL backends")
	notifyBatch := flag.Int("notify-batch", 1, "with -notify: notifications per transaction (commits whose notifications go together)")
	flag.IntVar(&readers, "readers", 0, "besides the writers, this many readers: reader i reads writer i's record (GET) from instance i mod N, again and again; the rows then give reads/s and the reads' p50 and p99")
	flag.BoolVar(&readQuiet, "read-quiet", false, "with -readers: reader i reads a record of its own, written once before, instead of writer i's")
	flag.DurationVar(&flushDelay, "flush-delay", 0, "make every WAL flush of PostgreSQL take at least this long (commit_delay), as on a disk slower than this machine's")
	flag.Parse()
	withPprof = *pprofFlag
	if *notifyRate > 0 {
		if err := runNotify(*server, strings.Split(*bins, ","), *rounds, ints(*ns), *notifyRate, max(*notifyBatch, 1), *dur, *warm); err != nil {
			fmt.Fprintln(os.Stderr, "pgscale:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*server, strings.Split(*bins, ","), *rounds, ints(*ns), ints(*ws), strings.Split(*modes, ","), *dur, *warm); err != nil {
		fmt.Fprintln(os.Stderr, "pgscale:", err)
		os.Exit(1)
	}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "pgscale: %q is not a positive number\n", f)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

func run(server string, bins []string, rounds int, ns, ws []int, modes []string, dur, warm time.Duration) error {
	pg, stop, err := startPostgres(server, bins)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("%s per row after %s of warm-up\n\n", dur, warm)
	const row = "%-12s %9s %6s %7s %9s %8s %7s %9s %9s %7s %12s %8s %9s %9s\n"
	fmt.Printf(row, "build", "instances", "mode", "writers", "writes/s", "w/commit", "p99 ms", "inst µs/w", "idle µs/c", "pg µs/w", "pg idle µs/c",
		"reads/s", "read p50", "read p99")
	// PostgreSQL's CPU per commit of every row, by build, instances and
	// writers (rows "spread" for one instance, "one" for more), for the
	// summary.
	type key struct {
		bin  string
		n, w int
	}
	pgPerCommit := map[key][]float64{}
	seq := 0
	for _, n := range ns {
		for range rounds {
			for _, bin := range bins {
				seq++
				dbURL, insts, err := startOnNewDB(pg.URL, fmt.Sprintf("scale_%d_%d", os.Getpid(), seq), bin, n)
				if err != nil {
					return err
				}
				for _, mode := range modes {
					if mode == "one" && n == 1 && slices.Contains(modes, "spread") {
						continue // the same row
					}
					for _, w := range ws {
						r, err := measure(pg, dbURL, insts, mode, w, dur, warm)
						if err != nil {
							stopAll(insts)
							return err
						}
						idle, pgIdle := "-", "-"
						if mode == "one" && n > 1 {
							idle = fmt.Sprintf("%.1f", r.idleUsPerCommit)
							pgIdle = fmt.Sprintf("%.1f", r.pgIdleUsPerCommit)
						}
						if mode == "one" || n == 1 {
							k := key{bin, n, w}
							pgPerCommit[k] = append(pgPerCommit[k], r.pgUsPerCommit)
						}
						fmt.Printf(row, filepath.Base(bin), strconv.Itoa(n), mode, strconv.Itoa(w), fmt.Sprintf("%.0f", r.writesPerSec),
							fmt.Sprintf("%.1f", r.perCommit), fmt.Sprintf("%.1f", r.p99.Seconds()*1000),
							fmt.Sprintf("%.1f", r.instUsPerWrite), idle, fmt.Sprintf("%.1f", r.pgUsPerWrite), pgIdle,
							r.reads.rate(), r.reads.pct(50), r.reads.pct(99))
					}
				}
				stopAll(insts)
			}
		}
	}
	if server != "" || !slices.Contains(ns, 1) {
		return nil
	}
	fmt.Printf("\nPostgreSQL CPU per commit for each idle instance: (N instances, writes to one) - (1 instance), / (N-1)\n")
	for _, bin := range bins {
		for _, n := range ns {
			for _, w := range ws {
				one, many := pgPerCommit[key{bin, 1, w}], pgPerCommit[key{bin, n, w}]
				if n == 1 || len(one) == 0 || len(many) == 0 {
					continue
				}
				fmt.Printf("%-12s N=%d writers=%d: %.1f µs (per commit: %.1f with 1, %.1f with %d; means of %d and %d rounds)\n",
					filepath.Base(bin), n, w, (mean(many)-mean(one))/float64(n-1), mean(one), mean(many), n, len(one), len(many))
			}
		}
	}
	return nil
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// runNotify measures what idle instances cost per commit when nothing
// else runs: a sender stands for a writer (its notifications are those of
// commits of 4 small events, at consecutive positions past the log's
// head, which the instances take from the notifications alone), so the
// figures are the instances' and their backends' and little else's.
func runNotify(server string, bins []string, rounds int, ns []int, rate, batch int, dur, warm time.Duration) error {
	pg, stop, err := startPostgres(server, bins)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("%d notifications/s of 4 changes each, %d per transaction; %s per row after %s of warm-up\n\n", rate, batch, dur, warm)
	const row = "%-12s %9s %9s %13s %14s\n"
	fmt.Printf(row, "build", "instances", "notes/s", "inst µs/note", "pg idle µs/note")
	seq := 0
	for _, n := range ns {
		for range rounds {
			for _, bin := range bins {
				seq++
				dbURL, insts, err := startOnNewDB(pg.URL, fmt.Sprintf("notify_%d_%d", os.Getpid(), seq), bin, n)
				if err != nil {
					return err
				}
				sent, inst, backends, err := notifyFor(dbURL, insts, rate, batch, dur, warm)
				stopAll(insts)
				if err != nil {
					return err
				}
				per := func(d time.Duration) string {
					return fmt.Sprintf("%.1f", float64(d.Microseconds())/float64(n)/float64(max(sent, 1)))
				}
				fmt.Printf(row, filepath.Base(bin), strconv.Itoa(n), fmt.Sprintf("%.0f", float64(sent)/dur.Seconds()), per(inst), per(backends))
			}
		}
	}
	return nil
}

// notifyFor sends rate notifications a second, batch to a transaction,
// for warm+dur, and returns how many it sent in the last dur, with the
// CPU meanwhile of insts and of their backends.
func notifyFor(dbURL string, insts []*instance, rate, batch int, dur, warm time.Duration) (sent int, inst, backends time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), warm+dur+30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(context.Background())
	var head int64
	if err := conn.QueryRow(ctx, `SELECT seq FROM log_head`).Scan(&head); err != nil {
		return 0, 0, 0, err
	}
	const body = "event 0 7 0 10\nscale/e{\"n\":12345}"
	note := func() string {
		head += 4
		var b strings.Builder
		fmt.Fprintf(&b, "=%d 4 %d 4\n", head, time.Now().UnixMicro())
		for range 4 {
			b.WriteString(body)
		}
		return b.String()
	}
	tick := time.NewTicker(time.Second * time.Duration(batch) / time.Duration(rate))
	notes := make([]string, batch)
	defer tick.Stop()
	measureAt, end := time.Now().Add(warm), time.Now().Add(warm+dur)
	var inst0 []time.Duration
	var backends0 map[int]time.Duration
	for now := range tick.C {
		if inst0 == nil && !now.Before(measureAt) {
			backends0 = backendCPU(dbURL, insts)
			for _, in := range insts {
				inst0 = append(inst0, procCPU(in.cmd.Process.Pid))
			}
		}
		if !now.Before(end) {
			break
		}
		for i := range notes {
			notes[i] = note()
		}
		if _, err := conn.Exec(ctx, `SELECT pg_notify('switchboard.changes', n) FROM unnest($1::text[]) AS n`, notes); err != nil {
			return 0, 0, 0, err
		}
		if inst0 != nil {
			sent += batch
		}
	}
	for i, in := range insts {
		inst += procCPU(in.cmd.Process.Pid) - inst0[i]
	}
	for pid, t1 := range backendCPU(dbURL, insts) {
		backends += t1 - backends0[pid]
	}
	return sent, inst, backends, nil
}

func createDB(url, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	u, err := neturl.Parse(url)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// withPprof gives every instance a pprof listener.
var withPprof bool

type instance struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// startInstances starts n servers on the database, the first alone (it
// applies the migrations), and waits until each one is ready.
// startOnNewDB creates the database name on the server at url and starts
// n instances of bin on it; on failure none is left running.
func startOnNewDB(url, name, bin string, n int) (string, []*instance, error) {
	dbURL, err := createDB(url, name)
	if err != nil {
		return "", nil, err
	}
	insts, err := startInstances(bin, dbURL, n)
	if err != nil {
		stopAll(insts)
		return "", nil, err
	}
	return dbURL, insts, nil
}

func startInstances(bin, dbURL string, n int) ([]*instance, error) {
	var out []*instance
	for i := range n {
		port, err := freePort()
		if err != nil {
			return out, err
		}
		path, peers := strings.CutSuffix(bin, peersSuffix)
		cmd := exec.Command(path)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "HOST=127.0.0.1", "PORT="+strconv.Itoa(port),
			"AUTH_MODE=open", "LOG_FORMAT=text", "RATE_LIMIT=0")
		if withPprof {
			dport, err := freePort()
			if err != nil {
				return out, err
			}
			cmd.Env = append(cmd.Env, "DEBUG_ADDR=127.0.0.1:"+strconv.Itoa(dport))
			fmt.Printf("instance %d: pprof on http://127.0.0.1:%d/debug/pprof/\n", i, dport)
		}
		if peers {
			cmd.Env = append(cmd.Env, fmt.Sprintf("PEER_URL=http://127.0.0.1:%d", port))
		}
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return out, err
		}
		in := &instance{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{})}
		go func() { cmd.Wait(); close(in.done) }()
		out = append(out, in)
		if i == 0 {
			if err := waitReady(in); err != nil {
				return out, err
			}
		}
	}
	for _, in := range out[1:] {
		if err := waitReady(in); err != nil {
			return out, err
		}
	}
	return out, nil
}

func waitReady(in *instance) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-in.done:
			return fmt.Errorf("instance %s exited", in.url)
		default:
		}
		resp, err := http.Get(in.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("instance %s not ready after 60s", in.url)
}

func stopAll(insts []*instance) {
	for _, in := range insts {
		in.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, in := range insts {
		select {
		case <-in.done:
		case <-time.After(15 * time.Second):
			in.cmd.Process.Kill()
			<-in.done
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type result struct {
	writesPerSec, perCommit                       float64
	p99                                           time.Duration
	instUsPerWrite, idleUsPerCommit, pgUsPerWrite float64
	pgUsPerCommit, pgIdleUsPerCommit              float64
	reads                                         readings
}

// put writes a record.
func put(client *http.Client, url, body string) error {
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	return nil
}

// readings are the latencies of the reads of a measured time.
type readings struct {
	lat []time.Duration // sorted
	dur time.Duration
}

func (r readings) rate() string {
	if len(r.lat) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(len(r.lat))/r.dur.Seconds())
}

// pct returns the p-th percentile in milliseconds.
func (r readings) pct(p int) string {
	if len(r.lat) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.lat[len(r.lat)*p/100].Seconds()*1000)
}

// readers is -readers, readQuiet -read-quiet.
var (
	readers   int
	readQuiet bool
)

// measure runs w writers for warm+dur and measures the last dur.
func measure(pg *pgtest.Server, dbURL string, insts []*instance, mode string, w int, dur, warm time.Duration) (result, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: w + readers, MaxConnsPerHost: w + readers}}
	defer client.CloseIdleConnections()
	var measuring atomic.Bool
	var stop atomic.Bool
	var failed atomic.Value
	lat := make([][]time.Duration, w)
	var wg sync.WaitGroup
	for i := range w {
		target := insts[0]
		if mode == "spread" {
			target = insts[i%len(insts)]
		}
		wg.Go(func() {
			url := target.url + "/records/scale/w" + strconv.Itoa(i)
			for n := 0; !stop.Load(); n++ {
				body := `{"n":` + strconv.Itoa(n) + `,"pad":"0123456789012345678901234567890123456789"}`
				t := time.Now()
				if err := put(client, url, body); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				if measuring.Load() {
					lat[i] = append(lat[i], time.Since(t))
				}
			}
		})
	}
	reads := make([][]time.Duration, readers)
	for i := range readers {
		target := insts[i%len(insts)]
		wg.Go(func() {
			url := target.url + "/records/scale/w" + strconv.Itoa(i%w)
			if readQuiet {
				url = target.url + "/records/scale/r" + strconv.Itoa(i)
				if err := put(client, url, `{"quiet":true}`); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
			for !stop.Load() {
				t := time.Now()
				resp, err := client.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
						err = fmt.Errorf("GET %s: %s", url, resp.Status)
					}
				}
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				if measuring.Load() {
					reads[i] = append(reads[i], time.Since(t))
				}
			}
		})
	}
	time.Sleep(warm)
	head0, commits0, err := logHead(dbURL)
	if err != nil {
		stop.Store(true)
		wg.Wait()
		return result{}, err
	}
	inst0 := make([]time.Duration, len(insts))
	for i, in := range insts {
		inst0[i] = procCPU(in.cmd.Process.Pid)
	}
	pg0 := groupCPU(pg.Pid())
	backends0 := backendCPU(dbURL, insts[1:])
	start := time.Now()
	measuring.Store(true)
	time.Sleep(dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	pg1 := groupCPU(pg.Pid())
	backends1 := backendCPU(dbURL, insts[1:])
	inst1 := make([]time.Duration, len(insts))
	for i, in := range insts {
		inst1[i] = procCPU(in.cmd.Process.Pid)
	}
	stop.Store(true)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return result{}, err
	}
	head1, commits1, err := logHead(dbURL)
	if err != nil {
		return result{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return result{}, errors.New("no write completed")
	}
	slices.Sort(all)
	writes := float64(len(all))
	// The log's head and group count are read around the measured time
	// (they include the tail of writes under way at its ends).
	logged, commits := float64(head1-head0), float64(commits1-commits0)
	var busy, idle time.Duration
	for i := range insts {
		d := inst1[i] - inst0[i]
		busy += d
		if i > 0 {
			idle += d
		}
	}
	var read []time.Duration
	for _, l := range reads {
		read = append(read, l...)
	}
	slices.Sort(read)
	r := result{
		reads:          readings{read, elapsed},
		writesPerSec:   writes / elapsed.Seconds(),
		perCommit:      logged / max(commits, 1),
		p99:            all[len(all)*99/100],
		instUsPerWrite: float64(busy.Microseconds()) / writes,
		pgUsPerWrite:   float64((pg1 - pg0).Microseconds()) / writes,
		pgUsPerCommit:  float64((pg1 - pg0).Microseconds()) / max(commits, 1),
	}
	if len(insts) > 1 && mode == "one" {
		r.idleUsPerCommit = float64(idle.Microseconds()) / float64(len(insts)-1) / max(commits, 1)
		var backends time.Duration
		for pid, t1 := range backends1 {
			backends += t1 - backends0[pid] // a backend that started meanwhile: all of it
		}
		r.pgIdleUsPerCommit = float64(backends.Microseconds()) / float64(len(insts)-1) / max(commits, 1)
	}
	return r, nil
}

// logHead returns the log's head and the number of write transactions
// (distinct log times: one per group) so far.
func logHead(dbURL string) (head, commits int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT (SELECT seq FROM log_head), (SELECT count(DISTINCT time) FROM log)`).Scan(&head, &commits)
	return head, commits, err
}

// backendCPU returns the CPU time of each PostgreSQL backend that serves
// one of insts, by its pid: the backends whose client port is the local
// port of one of the instances' sockets.
func backendCPU(dbURL string, insts []*instance) map[int]time.Duration {
	out := map[int]time.Duration{}
	if len(insts) == 0 {
		return out
	}
	ports := map[int]bool{}
	for _, in := range insts {
		for _, p := range localPorts(in.cmd.Process.Pid) {
			ports[p] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return out
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid, client_port FROM pg_stat_activity WHERE client_port > 0`)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var pid, port int
		if rows.Scan(&pid, &port) == nil && ports[port] {
			out[pid] = procCPU(pid)
		}
	}
	return out
}

// localPorts returns the local TCP ports of a process's sockets.
func localPorts(pid int) []int {
	fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/" + f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || !inodes[fs[9]] {
				continue
			}
			_, hex, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hex, 16, 32); err == nil {
				ports = append(ports, int(p))
			}
		}
	}
	return ports
}

// clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const ticks = 100

// procCPU returns the user and system time of a process (all its threads).
func procCPU(pid int) time.Duration {
	f, ok := statFields(pid)
	if !ok {
		return 0
	}
	return ticksOf(f[11]) + ticksOf(f[12]) // utime, stime (fields 14, 15)
}

// groupCPU returns the CPU time of a postmaster and its children (the
// backends, each in a session of its own), with the children it has reaped.
func groupCPU(pgid int) time.Duration {
	if pgid == 0 {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, ok := statFields(pid)
		if !ok || (pid != pgid && f[1] != strconv.Itoa(pgid)) { // ppid (field 4)
			continue
		}
		total += ticksOf(f[11]) + ticksOf(f[12])
		if pid == pgid {
			total += ticksOf(f[13]) + ticksOf(f[14]) // cutime, cstime
		}
	}
	return total
}

// statFields returns the fields of /proc/pid/stat after the command name:
// f[0] is the state (field 3).
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	return f, len(f) > 14
}

func ticksOf(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * time.Second / ticks
}

// resolve makes the paths of the server binaries absolute, and checks that
// they are there.
func resolve(bins []string) error {
	for i, bin := range bins {
		bin, peers := strings.CutSuffix(bin, peersSuffix)
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("the server binary: %w (build it: go build -o bin/switchboard .)", err)
		}
		bins[i] = abs
		if peers {
			bins[i] += peersSuffix
		}
	}
	return nil
}

// peersSuffix ends a binary's name in -bin to run it with PEER_URL: the
// same binary's rows with and without a sequencer compare in one run.
const peersSuffix = "+peers"

// startPostgres resolves the server binaries (resolve), then returns the
// PostgreSQL server at url, or when url is "" starts a durable one (with
// -flush-delay's slower flushes), which stop stops and removes;
// interrupted, it does that too (the instances die with this process:
// Pdeathsig).
func startPostgres(url string, bins []string) (pg *pgtest.Server, stop func(), err error) {
	if err := resolve(bins); err != nil {
		return nil, nil, err
	}
	if url != "" {
		return &pgtest.Server{URL: url}, func() {}, nil
	}
	if pg, err = pgtest.StartDurable(); err != nil {
		return nil, nil, err
	}
	stop = func() { pg.Stop(); pg.Remove() }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		stop()
		os.Exit(1)
	}()
	fmt.Printf("PostgreSQL (fsync on) pid %d; ", pg.Pid())
	if err := slowFlush(pg.URL); err != nil {
		stop()
		return nil, nil, err
	}
	return pg, stop, nil
}

// flushDelay is -flush-delay.
var flushDelay time.Duration

// slowFlush makes every WAL flush of the server at url wait flushDelay
// first (commit_delay with no siblings needed), holding the WAL write lock
// as a slow disk's flush would: flushes that come meanwhile join it.
func slowFlush(url string) error {
	if flushDelay <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		fmt.Sprintf("ALTER SYSTEM SET commit_delay = %d", flushDelay.Microseconds()),
		"ALTER SYSTEM SET commit_siblings = 0",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("-flush-delay: %w", err)
		}
	}
	fmt.Printf("every WAL flush takes %v more; ", flushDelay)
	return nil
}
