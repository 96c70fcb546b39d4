package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/mailbox"
)

var _ api.Bus = (*Bus)(nil)

// MaxPayload is the largest payload Send accepts, in bytes (NOTIFY itself
// stops at 8000), as on every Bus.
const MaxPayload = mailbox.MaxPayload

// channelPrefix namespaces the NOTIFY channels of topics.
const channelPrefix = "switchboard."

// Bus is the api.Bus on LISTEN/NOTIFY. Send is pg_notify on the channel of
// the topic, through the pool; one listener goroutine (listener.go) owns a
// dedicated connection that LISTENs on every subscribed topic. Each
// subscription has its own goroutine and queue, so a slow handler never
// stops the listener from reading (a listener that stops reading fills the
// server's notification queue, and then every NOTIFY fails); a burst of
// nil payloads (plain wake-ups) is folded into one call. Every handler is
// called with nil once its subscription is live, and again after every
// reconnect. Bus is safe for concurrent use.
type Bus struct {
	pool *pgxpool.Pool
	l    *listener
}

// Send delivers payload to the handlers of topic on every instance, this
// one included (through its listener). A nil payload arrives as nil: a
// plain wake-up. Payloads larger than MaxPayload are refused with
// CodePayloadTooLarge, and so are binary ones (not UTF-8, or with a NUL)
// over 5,997 bytes, which NOTIFY cannot carry once in base64.
func (b *Bus) Send(ctx context.Context, topic string, payload []byte) error {
	if err := mailbox.CheckSize(topic, payload); err != nil {
		return err
	}
	if err := checkTopic(topic); err != nil {
		return err
	}
	enc := encodePayload(payload)
	if len(enc) >= 8000 {
		return api.Errorf(api.CodePayloadTooLarge,
			"bus payload of %d bytes on %q: over NOTIFY's limit once encoded (binary payloads are sent in base64)", len(payload), topic)
	}
	if _, err := b.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel(topic), enc); err != nil {
		return fmt.Errorf("notify %s: %w", topic, err)
	}
	return nil
}

// Subscribe calls fn for every payload sent on topic, in order, from one
// goroutine, until cancel is called. fn is first called with nil once the
// listener LISTENs on topic, and again after every reconnect. While the
// listener is connected, Subscribe returns once the subscription is live
// (or after 10 s), so that whatever is sent after it returns arrives.
func (b *Bus) Subscribe(topic string, fn func(payload []byte)) (cancel func()) {
	return b.l.subscribe(topic, func() *mailbox.Sub { return b.l.subs.Add(topic, fn) })
}

// SubscribeWake is Subscribe for a handler that only needs to know that
// something was sent on topic: wake is called on the listener's own
// goroutine as each payload is read (and where Subscribe's handler would
// get nil), so it saves a hand-off between goroutines per notification;
// for this instance's own groups, on the committer's (commitGroup).
// On api.TopicChanges it gets the position announced, so that a handler
// that has read that far already can skip the wake-up; it gets 0 when
// there is none (after a reconnect, a notification it does not know, any
// other topic) and must then act. wake must be quick and never block, nor
// call the Bus: a signal on a channel with a buffer of one, say
// (realtime.Hub's wake-up for changes).
func (b *Bus) SubscribeWake(topic string, wake func(head int64)) (cancel func()) {
	return b.l.subscribe(topic, func() *mailbox.Sub { return b.l.subs.AddWaker(topic, wake) })
}

// Ready reports whether the listener is connected, so that notifications
// from other instances can arrive.
func (b *Bus) Ready(context.Context) error { return b.l.ready() }

func (b *Bus) close() { b.l.close() }

// channel returns the NOTIFY channel of a topic.
func channel(topic string) string { return channelPrefix + topic }

// checkTopic refuses topics whose channel is not a valid identifier
// (at most 63 bytes).
func checkTopic(topic string) error {
	if topic == "" || len(channel(topic)) > 63 {
		return fmt.Errorf("bus topic %q: must be 1 to %d bytes", topic, 63-len(channelPrefix))
	}
	return nil
}

// A NOTIFY payload is text: "" for a nil payload, "=" and the bytes when
// they are valid UTF-8 without NUL, else "~" and their base64.
func encodePayload(p []byte) string {
	switch {
	case p == nil:
		return ""
	case utf8.Valid(p) && !containsNUL(p):
		return "=" + string(p)
	default:
		return "~" + base64.StdEncoding.EncodeToString(p)
	}
}

func decodePayload(s string) ([]byte, error) {
	switch {
	case s == "":
		return nil, nil
	case s[0] == '=':
		return []byte(s[1:]), nil
	case s[0] == '~':
		return base64.StdEncoding.DecodeString(s[1:])
	}
	return nil, errors.New("not a switchboard payload")
}

func containsNUL(p []byte) bool {
	for _, c := range p {
		if c == 0 {
			return true
		}
	}
	return false
}

// checkJSON refuses what the json column would: invalid JSON or invalid
// UTF-8 (Postgres keeps text in UTF-8; Go's JSON accepts any bytes inside
// strings). Checking here makes it the failing batch's error instead of
// failing the whole group's transaction.
func checkJSON(data []byte, nilOK bool) *api.Error {
	if data == nil && nilOK {
		return nil
	}
	if !json.Valid(data) || !utf8.Valid(data) {
		return api.Errorf(api.CodeInvalidJSON, "the value is not JSON in UTF-8")
	}
	return nil
}
