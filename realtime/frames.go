package realtime

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/switchboard-dev/switchboard/api"
)

// Frames are built by hand, not with json.Marshal: record data is already
// compact JSON (one line, as SSE needs), and names are plain ASCII, so
// appending is both correct and several times cheaper on the fan-out path.

// appendFrame appends "event: <event>\ndata: <data>\n\n".
func appendFrame(b []byte, event string, data []byte) []byte {
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// jsonFrame encodes v as the data of a frame. It fails on data that
// encoding/json refuses, which only a stored record can bring (one nested
// deeper than its limit, written before writes were bounded): the stream
// that needs the frame must end, through its normal end, and say why.
//
// HTML characters are not escaped: record frames carry a record's stored
// JSON as it is, and a snapshot is the same data (escaping could also make
// a snapshot up to six times larger than its record).
func jsonFrame(event string, v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, &encodeError{event: event, err: err}
	}
	b.WriteByte('\n') // Encode ended the data line; a blank line ends the frame
	return b.Bytes(), nil
}

// encodeError says that a frame could not be encoded: the data is at
// fault, not the client.
type encodeError struct {
	event string
	err   error
}

func (e *encodeError) Error() string { return "encode " + e.event + " frame: " + e.err.Error() }
func (e *encodeError) Unwrap() error { return e.err }

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

func appendData(b []byte, data json.RawMessage) []byte {
	if data == nil {
		return append(b, "null"...)
	}
	return append(b, data...)
}

// changeFrame encodes a change for subscribers of the whole record or of
// the event: the frame is the same bytes for every stream.
func changeFrame(ch *api.Change) []byte {
	d := make([]byte, 0, 64+len(ch.Name)+len(ch.Data))
	switch ch.Kind {
	case api.KindEvent:
		d = append(d, `{"name":`...)
		d = appendString(d, ch.Name)
		d = append(d, `,"data":`...)
		d = appendData(d, ch.Data)
		d = append(d, `,"publisher":`...)
		if ch.Publisher == "" {
			d = append(d, "null"...)
		} else {
			d = appendString(d, ch.Publisher)
		}
		d = append(d, `,"id":"`...)
		d = strconv.AppendInt(d, ch.Seq, 10)
		d = append(d, `"}`...)
		return appendFrame(make([]byte, 0, len(d)+24), "event", d)
	case api.KindDelete:
		return appendFrame(nil, "delete", deleteData(ch))
	}
	return recordFrame(ch, nil, ch.Data)
}

func deleteData(ch *api.Change) []byte {
	d := append([]byte(`{"name":`), appendString(nil, ch.Name)...)
	d = append(d, `,"version":`...)
	d = strconv.AppendInt(d, ch.Version, 10)
	return append(d, '}')
}

// recordFrame encodes a record frame; path is nil for the whole record.
func recordFrame(ch *api.Change, path *api.Path, data json.RawMessage) []byte {
	d := make([]byte, 0, 64+len(ch.Name)+len(data))
	d = append(d, `{"name":`...)
	d = appendString(d, ch.Name)
	d = append(d, `,"version":`...)
	d = strconv.AppendInt(d, ch.Version, 10)
	if path != nil {
		d = append(d, `,"path":`...)
		d = appendString(d, path.String())
	}
	d = append(d, `,"data":`...)
	d = appendData(d, data)
	d = append(d, `,"op":"`...)
	d = append(d, ch.Kind...)
	d = append(d, `"}`...)
	return appendFrame(make([]byte, 0, len(d)+24), "record", d)
}

type readyData struct {
	Stream        string             `json:"stream"`
	Subscriptions []api.Subscription `json:"subscriptions"`
}

type snapshotData struct {
	Name    string          `json:"name"`
	Version int64           `json:"version"`
	Path    string          `json:"path,omitempty"`
	Data    json.RawMessage `json:"data"`
}

type resetData struct {
	Reason string `json:"reason"`
}

type deniedData struct {
	Subscription api.Subscription `json:"subscription"`
	Code         api.Code         `json:"code"`
}
