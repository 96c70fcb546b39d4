package commit

import (
	"errors"

	"github.com/switchboard-dev/switchboard/api"
)

// Records is what the batches of writes of one group see of the records:
// each batch sees them as the batches before it left them, and a batch
// that fails leaves no trace. It is not safe for concurrent use: the
// commit loop that runs the group owns it.
type Records struct {
	// Read returns a record that no batch has written, as stored.
	Read func(name string) (api.RecordState, error)
	// Check, when set, refuses a change that the backend cannot store: an
	// event, or the new value of a record. Deletes are not checked.
	Check func(ch api.Change) *api.Error
	// Written holds the records that batches wrote, as they left them.
	Written map[string]api.RecordState
}

// Prepare computes the changes of one atomic batch of writes, without
// their positions: each write is applied (api.Write.Next) to its record
// as the writes before it left it. Only when every write succeeds are the
// records the batch wrote kept in Written. A write that fails fails the
// batch with an *api.Error that carries its index; one that is not an
// *api.Error already becomes INTERNAL, its cause kept.
func (rs *Records) Prepare(writes []api.Write) ([]api.Change, error) {
	seen := make(map[string]api.RecordState) // as this batch left them
	changes := make([]api.Change, 0, len(writes))
	for i, w := range writes {
		var ch api.Change
		if w.Kind == api.KindEvent {
			ch = api.Change{Kind: api.KindEvent, Name: w.Name, Data: w.Data, Publisher: w.Publisher}
		} else {
			cur, ok := seen[w.Name]
			if !ok {
				var err error
				if cur, err = rs.current(w.Name); err != nil {
					return nil, api.Internal(err, "read %s", w.Name)
				}
			}
			var next api.RecordState
			var err error
			if ch, next, err = w.Next(cur); err != nil {
				return nil, failed(err, i, w.Name)
			}
			seen[w.Name] = next
		}
		if rs.Check != nil && ch.Kind != api.KindDelete {
			if err := rs.Check(ch); err != nil {
				return nil, err.With("index", i)
			}
		}
		changes = append(changes, ch)
	}
	for name, st := range seen {
		rs.Written[name] = st
	}
	return changes, nil
}

// current returns a record as the batches before this one left it.
func (rs *Records) current(name string) (api.RecordState, error) {
	if st, ok := rs.Written[name]; ok {
		return st, nil
	}
	return rs.Read(name)
}

// failed is the error of a batch whose write i (to name) failed with err.
func failed(err error, i int, name string) *api.Error {
	var e *api.Error
	if !errors.As(err, &e) {
		e = api.Internal(err, "write %d (%s)", i, name)
	}
	return e.With("index", i)
}
