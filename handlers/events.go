package handlers

import (
	"net/http"
	"strconv"

	"github.com/switchboard-dev/switchboard/realtime"
)

// publish serves POST /events/{name}: 202 once the event is in the log.
func publish(events *realtime.Events) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, err := nameParam(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		body, err := readJSON(r, nil)
		if err != nil {
			writeError(w, r, err)
			return
		}
		ch, err := events.Publish(r.Context(), userFrom(r), name, body)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusAccepted, struct {
			ID string `json:"id"`
		}{strconv.FormatInt(ch.Seq, 10)})
	}
}
