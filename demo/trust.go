package demo

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// mark is what makes the provider's user its own: a Go pointer in its
// claims, which no token's claims (decoded JSON) can equal.
var mark = new(byte)

const markClaim = "switchboard.demo"

// self is the provider's user: anonymous (its stream is no presence), and
// trusted by Trust.
var self = api.User{Claims: map[string]any{markClaim: mark}}

func isSelf(u api.User) bool {
	m, ok := u.Claims[markClaim].(*byte)
	return ok && m == mark
}

// Trust returns access, allowing everything to the provider's own user:
// the demo is the server's own code, and works whatever the permission
// rules say. Everyone else is decided by access, as before.
func Trust(access realtime.Access) realtime.Access {
	if _, all := access.(realtime.AllowAll); all {
		return access // allows everything already; keep its fast paths
	}
	return trusted{access}
}

type trusted struct{ realtime.Access }

func (t trusted) Allow(ctx context.Context, r realtime.Request) error {
	if isSelf(r.User) {
		return nil
	}
	return t.Access.Allow(ctx, r)
}

// GuestPrefix begins the id of every user of the demo's login, so that
// rules that name users (user.id == 'admin') never match a guest.
const GuestPrefix = "guest-"

var guestName = regexp.MustCompile(`^[\p{L}\p{N} ._-]{1,24}$`)

// Login is the demo's login, for a server in open mode without an auth
// webhook: credentials {"name": "Ada"} log in as the guest "guest-ada"
// (its clientData is {"name": "Ada"}), so that the page's users are
// presence. Anyone may be any guest: it gives no right that an anonymous
// user of an open server lacks, but a name.
func Login(credentials json.RawMessage) (id string, clientData json.RawMessage, err error) {
	var c struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(credentials, &c)
	name := strings.TrimSpace(c.Name)
	if !guestName.MatchString(name) {
		return "", nil, api.InvalidParameter("name", `the demo's login takes {"name": "..."}: 1 to 24 letters, digits, spaces, '.', '_' or '-'`)
	}
	slug := strings.ToLower(strings.Join(strings.Fields(name), "-"))
	clientData, _ = json.Marshal(map[string]string{"name": name})
	return GuestPrefix + slug, clientData, nil
}
