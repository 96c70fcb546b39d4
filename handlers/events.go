package handlers

import (
	"net/http"
	"strconv"

	"github.com/switchboard-dev/switchboard/realtime"
)

// publish serves POST /events/{name}: 202 once the event is in the log.
func publish(events *realtime.Events) http.HandlerFunc {
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		name, body, err := namedJSON(r)
		if err != nil {
			return err
		}
		ch, err := events.Publish(r.Context(), userFrom(r), name, body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, struct {
			ID string `json:"id"`
		}{strconv.FormatInt(ch.Seq, 10)})
		return nil
	})
}
