package rules_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// A ~200-byte auction item, before and after a bid.
var (
	itemBefore = json.RawMessage(`{"title":"A brass lamp, 1920s, working","seller":"sam","price":120,"currency":"EUR","bids":7,"bidder":"bea","ends":"2026-12-24T18:00:00Z","tags":["lamp","brass","antique"],"shipping":{"eu":12.5,"world":30}}`)
	itemAfter  = json.RawMessage(`{"title":"A brass lamp, 1920s, working","seller":"sam","price":125,"currency":"EUR","bids":8,"bidder":"bob","ends":"2026-12-24T18:00:00Z","tags":["lamp","brass","antique"],"shipping":{"eu":12.5,"world":30}}`)
)

func BenchmarkDecide(b *testing.B) {
	r := compile(b, strings.Replace(auctionRules, "record:\n", `record:
  "lot/$id":
    read: "record('auction/item/sam/' + $id).seller == user.id"
  "doc/$id":
    read: "data.public || user.id == data.owner"
`, 1))
	bidder := api.User{ID: "bob", Data: map[string]any{"canBid": true}}
	ctx := context.Background()
	run := func(b *testing.B, q rules.Query, recs rules.Records) {
		b.ReportAllocs()
		for b.Loop() {
			if d := r.Decide(ctx, q, recs); !d.Allowed {
				b.Fatalf("%+v", d)
			}
		}
	}
	b.Run("constant", func(b *testing.B) {
		run(b, rules.Query{Section: "record", Action: "read", Name: "auction/item/sam/lamp", User: bidder, Data: itemAfter}, nil)
	})
	b.Run("user", func(b *testing.B) {
		run(b, rules.Query{Section: "record", Action: "create", Name: "auction/item/bob/lamp", User: bidder, Data: itemAfter}, nil)
	})
	b.Run("write", func(b *testing.B) {
		run(b, rules.Query{Section: "record", Action: "write", Name: "auction/item/sam/lamp", User: bidder, Data: itemAfter, OldData: itemBefore}, nil)
	})
	// One change delivered to many subscribers: the data is decoded once.
	b.Run("shared", func(b *testing.B) {
		v := rules.NewValues(itemAfter, itemBefore)
		run(b, rules.Query{Section: "record", Action: "write", Name: "auction/item/sam/lamp", User: bidder, Values: v}, nil)
	})
	// ... and the data alone decides, for every subscriber at once.
	b.Run("sharedAll", func(b *testing.B) {
		v := rules.NewValues(json.RawMessage(`{"public":true,"owner":"sam"}`), nil)
		run(b, rules.Query{Section: "record", Action: "read", Name: "doc/lamp", User: bidder, Values: v}, nil)
	})
	b.Run("record", func(b *testing.B) {
		recs := &records{data: map[string]string{"auction/item/sam/lamp": string(itemBefore)}}
		run(b, rules.Query{Section: "record", Action: "read", Name: "lot/lamp", User: api.User{ID: "sam"}}, recs)
	})
}
