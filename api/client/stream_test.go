package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/api/client"
)

// TestStreamLargeFrame: a record of 600 KiB, far beyond r3labs/sse's
// default 64 KiB buffer, comes whole in its snapshot and its change.
func TestStreamLargeFrame(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := client.NewClient(serverURL)
	big := strings.Repeat("x", 600<<10)
	if _, err := c.Put(ctx, "t-large/doc", big, client.Cond{}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Stream(ctx, client.RecordSub("t-large/doc"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Put(ctx, "t-large/doc", big+"y", client.Cond{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for f := range s.Frames() {
		if r, err := f.AsRecord(); err == nil {
			var v string
			if err := r.Decode(&v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
			if len(got) == 2 {
				break
			}
		}
	}
	if len(got) != 2 || got[0] != big || got[1] != big+"y" {
		t.Errorf("got %d values, want the snapshot and the change whole", len(got))
	}
}
