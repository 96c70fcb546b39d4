// Package realtime is Switchboard's engine, free of HTTP: the record and
// event services, the hub that fans changes out to this instance's streams,
// and the streams themselves. Every operation knows its caller and passes
// one permission check point, Access.
package realtime

import (
	"context"
	"encoding/json"

	"github.com/switchboard-dev/switchboard/api"
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

// Request is one question to the permission check point. Data is the value
// after a write (an event's payload for a publish), OldData the one before.
type Request struct {
	User    api.User
	Action  Action
	Name    string
	Data    json.RawMessage
	OldData json.RawMessage
}

// Access is the one permission check point every operation passes. Allow
// returns nil or a PERMISSION_DENIED error. Implementations are safe for
// concurrent use.
type Access interface {
	Allow(ctx context.Context, r Request) error
}

// AllowAll is the Access of a server without permission rules.
type AllowAll struct{}

// Allow allows everything.
func (AllowAll) Allow(context.Context, Request) error { return nil }
