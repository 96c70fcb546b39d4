package realtime

import (
	"context"
	"strconv"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
)

// BenchmarkFanOutRules measures BenchmarkDispatch's hot path for one
// record: a change handed to 1,000 streams of 1,000 different users
// (tokens) subscribed to it, then every queue drained into a sink that
// drops the bytes, without rules ("none"), under a read rule that does not
// depend on the data ("static": decided once per subscription), and under
// one that does ("data": evaluated per delivery on values decoded once per
// change). Run with -count N: the three alternate, and their ns/op give
// the ratios (issue 11 asks static >= 0.95x and data >= 0.5x of none).
//
// More cases: "shared", a rule on the data and the user that the data
// alone decides (data.public || ...: once per change for everyone);
// "owner", one that only each user decides (data.owner != user.id); and
// "floor", an Access that depends on the data but evaluates nothing: what
// the streams' own per-delivery bookkeeping costs.
func BenchmarkFanOutRules(b *testing.B) {
	const subscribers = 1000
	cases := []struct {
		name, rules string
		access      Access
	}{
		{"none", "", nil},
		{"static", "record:\n  \"bench/$id\":\n    read: \"user.id != ''\"\n", nil},
		{"data", "record:\n  \"bench/$id\":\n    read: \"data.public == true && user.id != ''\"\n", nil},
		{"shared", "record:\n  \"bench/$id\":\n    read: \"data.public || user.id == data.owner\"\n", nil},
		{"owner", "record:\n  \"bench/$id\":\n    read: \"data.owner != user.id\"\n", nil},
		{"floor", "", dataAccess{}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			hub, streams := benchRecordStreams(b, subscribers, c.rules, c.access)
			ctx := context.Background()
			payload := []byte(`{"public":true,"owner":"nobody","msg":"hello, subscribers","n":1}`)
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				hub.dispatch(&api.Change{Seq: int64(n + 1), Kind: api.KindSet, Name: "bench/doc", Version: int64(n + 1), Data: payload})
				for _, s := range streams {
					if err := s.drainQueue(ctx); err != nil {
						b.Fatal(err)
					}
					if err := s.flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			for _, s := range streams {
				if len(s.subs) != 1 {
					b.Fatal("a subscription ended")
				}
			}
		})
	}
}

// benchRecordStreams opens n streams of n users subscribed to the record
// bench/doc on a hub that is not running, under rules (YAML; "": none) or
// access (nil: the rules').
func benchRecordStreams(b *testing.B, n int, src string, access Access) (*Hub, []*Stream) {
	hub, _ := benchStreams(b, 0)
	if src != "" {
		hub.access = NewRulesAccess(b, src)
	}
	if access != nil {
		hub.access = access
	}
	streams := make([]*Stream, n)
	for i := range streams {
		id := strconv.Itoa(i)
		s, err := hub.Open(context.Background(), api.User{ID: "user-" + id, TokenID: id}, []api.Subscription{{Record: "bench/doc"}}, "")
		if err != nil {
			b.Fatal(err)
		}
		s.sink = discard{}
		hub.register(s)
		streams[i] = s
	}
	return hub, streams
}

// dataAccess allows everything but says it depends on the data: every
// delivery asks it.
type dataAccess struct{}

func (dataAccess) Allow(context.Context, Request) error { return nil }

func (dataAccess) DependsOnData(Section, Action, string) bool { return true }
