package handlers

import (
	"errors"
	"net/http"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// maxPresenceUsers bounds the user= values of one GET /presence, as limit
// bounds a listing.
const maxPresenceUsers = 1000

// getPresence serves GET /presence and GET /presence?user=a&user=b: the
// users online across every instance, read from the Store, in id order.
func getPresence(p *realtime.Presence) http.HandlerFunc {
	type body struct {
		Users []string `json:"users"`
	}
	return handle(func(w http.ResponseWriter, r *http.Request) error {
		var users []string
		if q := r.URL.Query(); q.Has("user") {
			users = q["user"]
			if len(users) > maxPresenceUsers {
				return api.InvalidParameter("user", "at most %d user values, not %d", maxPresenceUsers, len(users))
			}
			for _, u := range users {
				if err := api.ValidateUserID(u); err != nil {
					var e *api.Error
					errors.As(err, &e)
					return api.InvalidParameter("user", "user=%q is not a user id: %s", u, e.Detail)
				}
			}
		}
		online, err := p.Online(r.Context(), userFrom(r), users)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, body{Users: online})
		return nil
	})
}
