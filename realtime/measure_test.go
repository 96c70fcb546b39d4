package realtime

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// TestEndReason: why a stream ended, as its end line and metric say it,
// from its end's error, the hub's drain and its deadline.
func TestEndReason(t *testing.T) {
	past, future := time.Now().Add(-time.Second), time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name     string
		err      error
		draining bool
		deadline time.Time
		expires  time.Time
		want     string
	}{
		{"client", nil, false, future, time.Time{}, EndClientGone},
		{"no deadline yet", nil, false, time.Time{}, time.Time{}, EndClientGone},
		{"lifetime", nil, false, past, future, EndLifetime},
		{"token", nil, false, past, past, EndTokenExpired},
		{"drain", nil, true, future, time.Time{}, EndDrain},
		{"drain after the deadline", nil, true, past, time.Time{}, EndDrain},
		{"slow", ErrSlow, false, future, time.Time{}, EndSlow},
		{"slow while draining", ErrSlow, true, future, time.Time{}, EndSlow},
		{"busy", errBusy, false, future, time.Time{}, EndBusy},
		{"behind", errBehind, false, future, time.Time{}, EndBehind},
		{"revoked", errRevoked, false, future, time.Time{}, EndRevoked},
		{"wrapped", fmt.Errorf("write: %w", ErrSlow), false, future, time.Time{}, EndSlow},
		{"write failed", errors.New("broken pipe"), false, future, time.Time{}, EndError},
	} {
		h := &Hub{draining: make(chan struct{})}
		if tc.draining {
			close(h.draining)
		}
		var got StreamEnd
		h.Measure(Measures{StreamEnd: func(e StreamEnd) { got = e }})
		s := &Stream{ID: "s1", User: api.User{ID: "ada", Expires: tc.expires}, hub: h, wake: make(chan struct{}, 1)}
		s.opened()
		if !tc.deadline.IsZero() {
			s.deadline = monoNow() + int64(time.Until(tc.deadline))
		}
		s.frames, s.sentFrames, s.sentBytes = 2, 3, 100
		s.end(tc.err)
		h.ended(s)
		if got.Reason != tc.want || got.Stream != "s1" || got.User != "ada" || got.Frames != 5 || got.Bytes != 100 ||
			got.Duration < 0 || !errors.Is(got.Err, tc.err) {
			t.Errorf("%s: %+v, want reason %s", tc.name, got, tc.want)
		}
	}
}
