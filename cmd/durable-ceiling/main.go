// Command durable-ceiling is ssebench's ceiling server (a minimal
// standard-library SSE fan-out, same flags and paths) with one change: a
// publish is appended to a file and fsynced before it is fanned out and
// answered, as Switchboard does with every event. Every publish queued
// when the committer wakes shares one write and one fsync (plain group
// commit). It shows what durability costs on a machine, so that
// Switchboard's durable publish rate can be compared with the least a
// durable server must spend. Each subscriber has a buffered channel (a
// full one drops the message, counted on /stats); with -batch a subscriber
// writes everything queued, then flushes once.
//
//	GET  /subscribe?topic=T  -> text/event-stream, one "data:" event per publish
//	POST /publish?topic=T    -> body made durable, then fanned out to every subscriber of T
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
)

type hub struct {
	mu     sync.RWMutex
	topics map[string]map[chan []byte]struct{}
	drops  atomic.Int64
	pubs   atomic.Int64
}

func (h *hub) subscribe(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	ch := make(chan []byte, *bufSize)
	h.mu.Lock()
	if h.topics[topic] == nil {
		h.topics[topic] = map[chan []byte]struct{}{}
	}
	h.topics[topic][ch] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.topics[topic], ch)
		if len(h.topics[topic]) == 0 {
			delete(h.topics, topic)
		}
		h.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	io.WriteString(w, ": ok\n\n") // readiness signal: subscription is registered
	if rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case msg := <-ch:
			if _, err := w.Write(msg); err != nil {
				return
			}
			for more := *batch; more; {
				select {
				case m := <-ch:
					if _, err := w.Write(m); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

func (h *hub) publish(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	durable(body) // the change from the ceiling: on disk before it is sent or answered
	// Frame once, share the same immutable slice with every subscriber.
	var buf bytes.Buffer
	for _, line := range bytes.Split(body, []byte("\n")) {
		buf.WriteString("data: ")
		buf.Write(line)
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
	msg := buf.Bytes()
	topic := r.URL.Query().Get("topic")
	h.mu.RLock()
	n := 0
	for ch := range h.topics[topic] {
		select {
		case ch <- msg:
			n++
		default:
			h.drops.Add(1)
		}
	}
	h.mu.RUnlock()
	h.pubs.Add(1)
	fmt.Fprintf(w, "%d\n", n)
}

type req struct {
	data []byte
	done chan struct{}
}

var reqs = make(chan *req, 4096)

func durable(body []byte) {
	r := &req{data: body, done: make(chan struct{})}
	reqs <- r
	<-r.done
}

// committer is a plain group commit: every request queued when it wakes
// shares one write and one fsync of a preallocated file (zeros written
// first, so that an fsync flushes data, not the file's size).
func committer(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	const size = 64 << 20
	f.Write(make([]byte, size))
	f.Sync()
	off := int64(0)
	var buf []byte
	for r := range reqs {
		group := []*req{r}
	drain:
		for {
			select {
			case r := <-reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		buf = buf[:0]
		for _, r := range group {
			buf = append(buf, r.data...)
		}
		if off+int64(len(buf)) > size {
			off = 0
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			log.Fatal(err)
		}
		off += int64(len(buf))
		if err := f.Sync(); err != nil {
			log.Fatal(err)
		}
		for _, r := range group {
			close(r.done)
		}
	}
}

var (
	file    = flag.String("file", "durable-ceiling.log", "the file every publish is appended to (64 MiB, reused from the start when full)")
	addr    = flag.String("addr", "127.0.0.1:8090", "listen address")
	bufSize = flag.Int("buf", 1024, "per-subscriber channel capacity")
	batch   = flag.Bool("batch", false, "write all queued events before each flush")
)

func main() {
	flag.Parse()
	go committer(*file)
	h := &hub{topics: map[string]map[chan []byte]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/subscribe", h.subscribe)
	mux.HandleFunc("/publish", h.publish)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		h.mu.RLock()
		n := 0
		for _, s := range h.topics {
			n += len(s)
		}
		h.mu.RUnlock()
		fmt.Fprintf(w, "subscribers=%d publishes=%d drops=%d\n", n, h.pubs.Load(), h.drops.Load())
	})
	log.Printf("ceiling listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}
