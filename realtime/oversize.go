package realtime

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Frames too large for a stream. The limits on writes (MAX_RECORD_BYTES,
// MAX_BODY_BYTES) keep every frame well inside a stream's buffer, and the
// configuration refuses a buffer too small for them (MinBufferBytes). Data
// stored before those limits, or under larger ones, can still make a frame
// larger than the buffer. Such a frame is never queued nor written: the
// subscriptions it concerns get a PAYLOAD_TOO_LARGE denied frame and end,
// and the stream goes on with the others.

// frameOverhead bounds what a frame adds to the data it carries: the
// event and id lines, and the fields around the data (a name of at most
// 256 bytes, a version, a path, a publisher, an event id).
const frameOverhead = 4 << 10

// deniedBytes is what a change whose frame is too large costs a stream's
// queue: only denied frames are written for it.
const deniedBytes = 256

// MinBufferBytes is the smallest stream buffer (STREAM_BUFFER_BYTES) for
// records of at most maxRecordBytes and event payloads of at most
// maxBodyBytes: room for two of the largest frames, so that a stream with
// one of them queued takes the next, and a large write does not cut a
// client that keeps up.
func MinBufferBytes(maxRecordBytes, maxBodyBytes int64) int64 {
	largest := max(maxRecordBytes, maxBodyBytes)
	if largest > math.MaxInt64/2-frameOverhead {
		return math.MaxInt64
	}
	return 2 * (largest + frameOverhead)
}

// newDelivery encodes a change once for every stream that takes it, and
// what it costs their queues.
func newDelivery(ch *api.Change, buffer int) *delivery {
	d := &delivery{change: ch, frame: changeFrame(ch)}
	if d.size = len(d.frame); d.size > buffer {
		d.size = min(deniedBytes, buffer)
	}
	return d
}

// tooLarge reports whether n bytes of frames can never fit the stream's
// buffer.
func (s *Stream) tooLarge(n int) bool { return n > s.hub.cfg.BufferBytes }

// deniedFrame is the frame that ends x because its data is too large.
func deniedFrame(x *sub) ([]byte, error) {
	return jsonFrame("denied", deniedData{Subscription: x.Subscription, Code: api.CodePayloadTooLarge})
}

// drop ends subscriptions of the stream (their denied frames are written),
// here and in the stored stream, so that a resume does not bring them
// back: its ready frame lists the subscriptions that go on.
func (s *Stream) drop(ctx context.Context, gone []*sub) error {
	if len(gone) == 0 {
		return nil
	}
	kept := make([]*sub, 0, len(s.subs))
	for _, x := range s.subs {
		if slices.Contains(gone, x) {
			s.hub.indexOne(s, x, -1)
		} else {
			kept = append(kept, x)
		}
	}
	s.subs = kept
	s.unwatch(gone)
	for _, x := range gone {
		if err := s.hub.store.RemoveStreamSub(ctx, s.ID, x.Subscription, time.Now()); err != nil {
			return err
		}
	}
	return nil
}
