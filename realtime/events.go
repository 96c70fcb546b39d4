package realtime

import (
	"context"

	"github.com/switchboard-dev/switchboard/api"
)

// Events is the pub/sub service. Events go through the change log like
// record writes, so that streams resume over them and every instance
// delivers them in one order. It is safe for concurrent use.
type Events struct {
	store  api.Store
	access Access
}

// NewEvents returns the event service over store.
func NewEvents(store api.Store, access Access) *Events {
	return &Events{store: store, access: access}
}

// Publish appends an event to the log and returns its change; once it
// returns, every current subscriber on every instance will receive it.
func (e *Events) Publish(ctx context.Context, user api.User, name string, payload []byte) (api.Change, error) {
	if err := api.ValidateName(name); err != nil {
		return api.Change{}, err
	}
	data, err := api.Compact(payload)
	if err != nil {
		return api.Change{}, err
	}
	if err := e.access.Allow(ctx, Request{User: user, Action: ActPublish, Name: name, Data: data}); err != nil {
		return api.Change{}, err
	}
	changes, err := e.store.Write(ctx, []api.Write{{Kind: api.KindEvent, Name: name, Data: data, Publisher: user.ID}})
	if err != nil {
		return api.Change{}, err
	}
	return changes[0], nil
}
