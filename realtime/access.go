// Package realtime is Switchboard's engine, free of HTTP: the record and
// event services, the hub that fans changes out to this instance's streams,
// and the streams themselves. Every operation knows its caller and passes
// one permission check point, Access.
package realtime

import (
	"context"
	"encoding/json"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime/rules"
)

// Action is what a caller wants to do with a name.
type Action string

// The actions that permission rules decide on.
const (
	ActRead      Action = "read"
	ActCreate    Action = "create"
	ActWrite     Action = "write"
	ActDelete    Action = "delete"
	ActPublish   Action = "publish"
	ActSubscribe Action = "subscribe"
	ActProvide   Action = "provide"  // serve an RPC: poll for its requests
	ActRequest   Action = "request"  // call an RPC; Data is the input
	ActPresence  Action = "presence" // read the presence of a user ("*": every user)
	ActListen    Action = "listen"   // be told of the demand for names under a prefix
)

// Section is the part of the permission rules an action belongs to.
type Section string

// The sections of the rules.
const (
	SecRecord   Section = "record"
	SecEvent    Section = "event"
	SecRPC      Section = "rpc"
	SecPresence Section = "presence"
)

// SectionOf returns the section of an action that belongs to one only,
// and "" for ActRead and ActListen, which a Request must say (reading a
// record or presence; listening for records or events).
func SectionOf(act Action) Section {
	switch act {
	case ActCreate, ActWrite, ActDelete:
		return SecRecord
	case ActPublish, ActSubscribe:
		return SecEvent
	case ActProvide, ActRequest:
		return SecRPC
	case ActPresence:
		return SecPresence
	}
	return ""
}

// Request is one question to the permission check point. Data is the value
// after a write (an event's payload for a publish, an RPC's input for a
// request, the value read for a read), OldData the one before (the value
// deleted for a delete).
type Request struct {
	User    api.User
	Section Section // "": SectionOf(Action), or SecRecord for ActRead and ActListen
	Action  Action
	Name    string
	Data    json.RawMessage
	OldData json.RawMessage
	// Values, when set, stands for Data and OldData decoded once and
	// shared by the many requests of one delivery (the hub's fan-out).
	Values *rules.Values
}

// Sec returns the request's section.
func (r Request) Sec() Section {
	if r.Section != "" {
		return r.Section
	}
	if s := SectionOf(r.Action); s != "" {
		return s
	}
	return SecRecord
}

// Access is the one permission check point every operation passes. Allow
// returns nil or a PERMISSION_DENIED error. Implementations are safe for
// concurrent use.
type Access interface {
	Allow(ctx context.Context, r Request) error
	// DependsOnData reports whether Allow's answer for act on name can
	// change with anything but the user and the name (the data, the time,
	// other records). When it cannot, the hub asks once per subscription
	// and not on every delivery.
	DependsOnData(sec Section, act Action, name string) bool
}

// AllowAll is the Access of a server without permission rules.
type AllowAll struct{}

// Allow allows everything.
func (AllowAll) Allow(context.Context, Request) error { return nil }

// DependsOnData is false: everything is allowed, always.
func (AllowAll) DependsOnData(Section, Action, string) bool { return false }
