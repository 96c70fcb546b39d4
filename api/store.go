package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Record is a JSON document and its version: 1 on creation, +1 on every
// successful write. A record that does not exist has version 0 and nil Data.
type Record struct {
	Name    string          `json:"name"`
	Version int64           `json:"version"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Kind says what a change did.
type Kind string

// The kinds of change in the change log.
const (
	KindSet    Kind = "set"    // a record was created or replaced
	KindPatch  Kind = "patch"  // part of a record changed (path write, patch)
	KindDelete Kind = "delete" // a record was deleted
	KindEvent  Kind = "event"  // an event was published
)

// Change is one entry of the ordered change log. Seq is its position: the
// log is totally ordered by Seq, and "every change after Seq X" is well
// defined on every instance.
type Change struct {
	Seq       int64           `json:"seq"`
	Time      time.Time       `json:"time"`
	Kind      Kind            `json:"kind"`
	Name      string          `json:"name"`
	Version   int64           `json:"version,omitempty"`   // records: the version after the change
	Data      json.RawMessage `json:"data,omitempty"`      // records: the whole new value; events: the payload
	Publisher string          `json:"publisher,omitempty"` // events: the publisher's user id
	// Created says that a record change created the record (its version
	// is 1 only if it never existed before: see RecordState). Write sets
	// it in the changes it returns; the log does not keep it.
	Created bool `json:"-"`
}

// Cond holds the conditions of a write, as RFC 9110's If-Match and
// If-None-Match state them. The zero Cond is no condition.
type Cond struct {
	// IfMatch, when not 0, makes the write happen only at that version
	// (a negative IfMatch matches none).
	IfMatch int64
	// IfExists (If-Match: *) makes the write happen only if the record exists.
	IfExists bool
	// IfNoneMatch (If-None-Match: *) makes the write create-only.
	IfNoneMatch bool
	// IfNotVersion, when not 0, refuses the write while the record is at
	// that version (If-None-Match: "<version>").
	IfNotVersion int64
}

// holds reports whether c allows a write to the record at version (0 when
// it does not exist).
func (c Cond) holds(version int64, exists bool) bool {
	switch {
	case c.IfMatch != 0 && c.IfMatch != version,
		c.IfExists && !exists,
		c.IfNoneMatch && exists,
		c.IfNotVersion != 0 && exists && c.IfNotVersion == version:
		return false
	}
	return true
}

// Write is one operation of an atomic batch.
type Write struct {
	Kind Kind
	Name string
	Cond
	// Apply computes a record's new value from its current one (nil and
	// exists false when it does not exist). It runs inside the store's
	// transaction, so it sees the record as it is at that moment; it must
	// not keep or modify current. Unused for deletes and events.
	Apply func(current json.RawMessage, exists bool) (json.RawMessage, error)
	// Check, when set, decides a delete inside the store's transaction,
	// with the record as it is at that moment (the value deleted, or nil
	// and exists false): an error refuses the delete. It runs before
	// NOT_FOUND, and a refusal wins over the conditions, so that it does
	// not tell whether the record exists. Unused for other kinds.
	Check func(current json.RawMessage, exists bool) error
	// Data is an event's payload.
	Data json.RawMessage
	// Publisher is the user id of an event's publisher.
	Publisher string
}

// ErrTrimmed says that a log position is older than the retained log.
var ErrTrimmed = errors.New("the position is older than the retained change log")

// ChangeOverhead is what a change counts against the log's size bound
// besides its name, publisher and data: about what a backend stores around
// them (position, time, kind, version, keys).
const ChangeOverhead = 64

// Size is what c counts against TrimOptions.MaxBytes: the bytes of its
// name, publisher and data, and ChangeOverhead. Every backend counts it
// the same way, so that a bound means the same on each and can be tested;
// what the files take on disk is more, by a factor of the backend.
func (c Change) Size() int64 {
	return int64(len(c.Name)+len(c.Publisher)+len(c.Data)) + ChangeOverhead
}

// TrimOptions says what Trim removes: a change goes when it is older than
// Before or when the changes after it are enough to fill MaxBytes.
type TrimOptions struct {
	// Before removes the changes made before it, and the streams not
	// updated since. The zero time removes nothing.
	Before time.Time
	// MaxBytes, when positive, removes the oldest changes until the Size
	// of the changes left adds up to MaxBytes or less (which may be none).
	MaxBytes int64
}

// Subscription is one subscription of a stream, in the form of the public
// contract: exactly one of Record (with an optional Path), Event (a name or
// "prefix/*"), Presence and Listen is set.
type Subscription struct {
	Record   string `json:"record,omitempty"`
	Path     string `json:"path,omitempty"`
	Event    string `json:"event,omitempty"`
	Presence string `json:"presence,omitempty"`
	Listen   string `json:"listen,omitempty"`
}

// StreamSub is a subscription of a stored stream. Since is the log position
// of its snapshot for a record subscription added to an open stream: a
// resume from before it must send a fresh snapshot.
type StreamSub struct {
	Subscription
	Since int64 `json:"since,omitempty"`
}

// StreamInfo is what every instance must know of a stream so that it can
// be resumed anywhere and changed from anywhere.
type StreamInfo struct {
	ID   string      `json:"id"`
	User string      `json:"user"`
	Subs []StreamSub `json:"subs"`
	// Start is a log position at or before every position the stream has
	// sent: a resume point below it was never sent. 0 when unknown (a
	// stream stored before Start existed, or a store that does not keep it).
	Start   int64     `json:"start,omitempty"`
	Updated time.Time `json:"updated"`
}

// Store keeps records, the change log and stream state. Implementations are
// safe for concurrent use; every backend passes the db/dbtest suite. The
// Data of returned records and changes may be shared with the store and
// with other callers: it is read-only.
type Store interface {
	// Get returns a record, or a NOT_FOUND error.
	Get(ctx context.Context, name string) (Record, error)
	// List returns up to limit records (without data) whose names start
	// with prefix and sort after after, in name order.
	List(ctx context.Context, prefix, after string, limit int) ([]Record, error)
	// ListData returns up to limit records, with their data, whose names
	// start with prefix and sort after after, in name order: a page of a
	// collection's snapshot, read at one log position, which it returns:
	// the page holds every record of its range (after its cursor, up to
	// its last name, or to the end when it is not full) as the log up to
	// that position left it. Successive pages may be read at different
	// positions.
	ListData(ctx context.Context, prefix, after string, limit int) (int64, []Record, error)
	// Write applies every write or none, in order, each one change of the
	// log, and returns the changes. A failing write's error is an *Error
	// with the field "index" set to its position.
	Write(ctx context.Context, writes []Write) ([]Change, error)
	// Snapshot reads records at one log position and returns that
	// position; missing records come back with version 0.
	Snapshot(ctx context.Context, names []string) (int64, []Record, error)
	// Changes returns up to limit changes after position after, in order:
	// fewer than limit only when it reached the end of the log as this
	// instance knew it, so that any later commit still wakes TopicChanges.
	// It returns ErrTrimmed when changes after it were trimmed away.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// Trim removes the changes that o says are too old or too many, a
	// prefix of the log (Changes from a position in it says ErrTrimmed),
	// and the streams not updated since o.Before.
	Trim(ctx context.Context, o TrimOptions) error
	// PutStream stores a stream's whole state, creating or replacing it
	// (a subscription listed twice is kept once, where it first is).
	// GetStream reads it, or NOT_FOUND: its Subs are in the order they
	// were put or added.
	PutStream(ctx context.Context, s StreamInfo) error
	GetStream(ctx context.Context, id string) (StreamInfo, error)
	// The methods below change one part of a stored stream, atomically:
	// changes made at the same time, from any instance, all take effect.
	// They cost what they change, not the size of the stream. Each one
	// returns NOT_FOUND for an unknown stream (and creates nothing).
	//
	// AddStreamSub adds sub after the stream's subscriptions and sets the
	// stream's Updated. A subscription that the stream has already stays
	// where it is, with its Since (SetStreamSince changes that).
	AddStreamSub(ctx context.Context, id string, sub StreamSub, updated time.Time) error
	// RemoveStreamSub removes a subscription, if the stream has it, and
	// sets the stream's Updated.
	RemoveStreamSub(ctx context.Context, id string, sub Subscription, updated time.Time) error
	// SetStreamSince sets the Since of the stream's subscription
	// sub.Subscription to sub.Since; a subscription that the stream no
	// longer has is not brought back. Updated stays as it is.
	SetStreamSince(ctx context.Context, id string, sub StreamSub) error
	// TouchStream sets a stream's Updated.
	TouchStream(ctx context.Context, id string, updated time.Time) error
	// PresenceStore keeps who is online (presence.go).
	PresenceStore
	// Revocations keeps the revoked tokens (revoke.go).
	Revocations
	// Listening is the demand and listeners of listen subscriptions (listen.go).
	Listening
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// TopicChanges is the Bus topic on which a Store announces new changes.
const TopicChanges = "changes"

// Bus carries small wake-ups between instances (payloads under 7,000
// bytes, binary ones under 5,000; Send refuses what it cannot carry with
// CodePayloadTooLarge): never data, only what tells an instance to look at
// the Store.
type Bus interface {
	// Send delivers payload to the handlers of topic on every instance,
	// this one included.
	Send(ctx context.Context, topic string, payload []byte) error
	// Subscribe calls fn for every payload sent on topic, in order, from one
	// goroutine. After a lost connection it calls fn(nil), since payloads
	// may have been missed (a backend may also call it once the subscription
	// is live). The returned func stops the calls; it does not wait for one
	// under way, so fn may call it.
	Subscribe(topic string, fn func(payload []byte)) (cancel func())
	// Ready reports whether wake-ups from other instances can arrive.
	Ready(ctx context.Context) error
}

// User is the caller of an operation: ID is empty for an anonymous user in
// open mode; Data is what permission rules see as user.data.
type User struct {
	ID   string
	Data map[string]any
	// Claims are every claim of the caller's verified token (sub, exp,
	// iss, data...), as permission rules see them in user.claims; nil for
	// an anonymous user.
	Claims map[string]any
	// Expires is when the caller's token expires: a stream opened with it
	// ends then, and the client resumes with a fresh one. Zero: never
	// (an anonymous user).
	Expires time.Time
	// TokenID names the caller's token for revocation: its jti claim when
	// it has one of at most MaxJTIBytes, else "sha256:" and the hex SHA-256
	// of the token itself, so that every token can be revoked. Empty for
	// an anonymous user.
	TokenID string
}

// RecordState is a record as a write batch sees it, the batch's own
// earlier writes included. A record that was deleted keeps its last
// version (the delete's) with Exists false: a tombstone, from which the
// next creation continues, so that a version never names two values.
type RecordState struct {
	Version int64
	Data    json.RawMessage
	Exists  bool
}

// Next checks w's conditions against cur and returns w's change (without
// its position) and the record after it. Every backend applies writes
// through it, so that conditions and versions mean the same everywhere.
// A record that does not exist is at version 0 for the conditions, and
// its cur.Version is its tombstone's (0 if it never existed).
func (w Write) Next(cur RecordState) (Change, RecordState, error) {
	version := cur.Version
	if !cur.Exists {
		version = 0
	}
	if !w.holds(version, cur.Exists) {
		// The rules come before the condition (RFC 9110, 13.2.1: a
		// precondition counts only for a request that would otherwise
		// succeed): a caller they refuse learns nothing of the record,
		// its existence or its version, from a 412.
		if err := w.refused(cur); err != nil {
			return Change{}, cur, err
		}
		return Change{}, cur, Conflict(w.Name, version)
	}
	// The next version continues after a tombstone's, not after 0.
	ch := Change{Kind: w.Kind, Name: w.Name, Version: cur.Version + 1}
	if w.Kind == KindDelete {
		if err := w.check(cur); err != nil {
			return Change{}, cur, err
		}
		if !cur.Exists {
			return Change{}, cur, NotFound(w.Name)
		}
		return ch, RecordState{Version: ch.Version}, nil
	}
	data, err := w.apply(cur)
	if err != nil {
		return Change{}, cur, err
	}
	if !cur.Exists {
		// A record's first value is set, whatever wrote it (a path write,
		// say): a live collection's first frame of a record created later
		// says "set", live and replayed alike.
		ch.Kind = KindSet
	}
	ch.Data, ch.Created = data, !cur.Exists
	return ch, RecordState{Version: ch.Version, Data: data, Exists: true}, nil
}

// refused returns the PERMISSION_DENIED that w would get on cur without
// its condition, or nil. Other failures leave the answer to the
// condition, as before.
func (w Write) refused(cur RecordState) error {
	var err error
	if w.Kind == KindDelete {
		err = w.check(cur)
	} else {
		_, err = w.apply(cur)
	}
	if IsCode(err, CodePermissionDenied) {
		return err
	}
	return nil
}

// check runs w.Check, if any, as apply runs w.Apply.
func (w Write) check(cur RecordState) (err error) {
	if w.Check == nil {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = Internal(fmt.Errorf("panic: %v", p), "check the delete of record %q", w.Name)
		}
	}()
	return w.Check(cur.Data, cur.Exists)
}

// apply runs w.Apply. It runs inside a backend's commit, where a panic
// would take the whole server down: a bug in a library that Apply calls
// (a JSON Patch, a rule) fails this write with INTERNAL instead.
func (w Write) apply(cur RecordState) (data json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, Internal(fmt.Errorf("panic: %v", p), "apply a write to record %q", w.Name)
		}
	}()
	return w.Apply(cur.Data, cur.Exists)
}
