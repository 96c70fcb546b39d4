package handlers

import (
	"net/http"
	"strconv"
)

// publish serves POST /events/{name}: 202 once the event is in the log.
func publish(x *writes) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		name, err := nameParam(r)
		if err != nil {
			return err
		}
		if err := requireJSON(r); err != nil {
			return err
		}
		body, err := readBody(r)
		if err != nil {
			return err
		}
		// Publish validates the body as it compacts it, with the errors
		// of readJSON.
		ch, err := x.publish(r, name, body)
		if err != nil {
			return err
		}
		// What writeJSON would write for {"id": "<seq>"}, without its
		// encoder.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		buf := make([]byte, 0, 32)
		buf = append(buf, `{"id":"`...)
		buf = strconv.AppendInt(buf, ch.Seq, 10)
		w.Write(append(buf, "\"}\n"...))
		return nil
	})
}
