package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// listened is the prefix the provider listens on: demand for a driver's
// record (a page subscribing to it exactly) starts its moves.
const listened = "driver/*"

// listen keeps one in-process stream open with a listen subscription on
// driver/*, and turns its listen frames into active drivers, until ctx
// ends or the hub drains.
func (p *Provider) listen(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil && !p.s.Hub.Draining() {
		s, err := p.s.Hub.Open(ctx, self, []api.Subscription{{Listen: listened}}, "")
		if err == nil {
			began := time.Now()
			err = s.Run(ctx, &frames{onListen: p.setActive})
			if time.Since(began) > time.Minute {
				backoff = 250 * time.Millisecond // it served: a new one is no retry
			}
		}
		// The listener is gone with its stream: the Store hands its names
		// to the next one, which is told them again.
		p.idleAll()
		if ctx.Err() != nil || p.s.Hub.Draining() {
			return
		}
		if err != nil {
			p.s.Log.Warn("demo: the listening stream ended", "err", err, "retry_in", backoff.String())
		}
		sleep(ctx, backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
}

// frames is the Sink of the provider's stream: it reads the SSE frames
// written to it and hands each listen frame of a record to onListen.
// Writes are made by the goroutine that runs the stream, one at a time.
type frames struct {
	buf      []byte
	aborted  atomic.Bool
	onListen func(name string, active bool)
}

var errAborted = errors.New("demo: stream aborted")

func (f *frames) Write(p []byte) (int, error) {
	if f.aborted.Load() {
		return 0, errAborted
	}
	f.buf = append(f.buf, p...)
	for {
		i := bytes.Index(f.buf, []byte("\n\n"))
		if i < 0 {
			break
		}
		f.frame(f.buf[:i])
		f.buf = append(f.buf[:0], f.buf[i+2:]...)
	}
	return len(p), nil
}

func (f *frames) Flush() error {
	if f.aborted.Load() {
		return errAborted
	}
	return nil
}

func (f *frames) Abort() { f.aborted.Store(true) }

// frame handles one SSE frame: lines of "field: value".
func (f *frames) frame(b []byte) {
	var event, data []byte
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("event: ")); ok {
			event = v
		} else if v, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			data = v
		}
	}
	if string(event) != "listen" {
		return
	}
	var l struct {
		Kind   string `json:"kind"`
		Name   string `json:"name"`
		Active bool   `json:"active"`
	}
	if json.Unmarshal(data, &l) == nil && l.Kind == "record" {
		f.onListen(l.Name, l.Active)
	}
}
