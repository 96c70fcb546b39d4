package realtime

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// feed is the presence service's side facing subscriptions: the online
// set as last read from the Store (the view) and the subscriptions
// watching it. A subscription's state and the changes after it come from
// the same view under the same lock, so that they meet with no gap and no
// overlap: every frame after the state flips what the subscriber knows of
// that user.
type feed struct {
	wmu  sync.Mutex
	view map[string]bool               // online users
	all  map[Watch]struct{}            // presence=* watchers
	one  map[string]map[Watch]struct{} // presence=USER watchers, by user
}

func newFeed() *feed {
	return &feed{
		view: make(map[string]bool),
		all:  make(map[Watch]struct{}),
		one:  make(map[string]map[Watch]struct{}),
	}
}

func (f *feed) lock()   { f.wmu.Lock() }
func (f *feed) unlock() { f.wmu.Unlock() }

// presenceData is the data of a presence frame.
type presenceData struct {
	User   string `json:"user"`
	Online bool   `json:"online"`
}

func presenceFrame(user string, online bool) []byte {
	frame, _ := jsonFrame("presence", presenceData{User: user, Online: online}) // strings and a bool always encode
	return frame
}

// Watch starts feeding a presence subscription and returns its state from
// the view: one frame per user online now in id order (presence=*), or the
// user's state (presence=USER). It never waits for the Store: it may run
// on a writer shared by many streams. Whatever the view does not have yet
// (the subscriber's own user coming online, say) arrives as a change.
func (p *Presence) Watch(w Watch) [][]byte {
	user := w.Subscription().Presence
	p.lock()
	defer p.unlock()
	if user != "*" {
		set := p.one[user]
		if set == nil {
			set = make(map[Watch]struct{})
			p.one[user] = set
		}
		set[w] = struct{}{}
		return [][]byte{presenceFrame(user, p.view[user])}
	}
	p.all[w] = struct{}{}
	users := make([]string, 0, len(p.view))
	for u := range p.view {
		users = append(users, u)
	}
	slices.Sort(users)
	frames := make([][]byte, len(users))
	for i, u := range users {
		frames[i] = presenceFrame(u, true)
	}
	return frames
}

// Unwatch stops feeding a presence subscription.
func (p *Presence) Unwatch(w Watch) {
	user := w.Subscription().Presence
	p.lock()
	defer p.unlock()
	if user == "*" {
		delete(p.all, w)
		return
	}
	if set := p.one[user]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(p.one, user)
		}
	}
}

// apply makes online (in id order), with this instance's own users
// (local), the view, and pushes a frame for each user who came or went to
// their watchers, in id order. The own users count whether or not the
// read saw their rows: a read begun before their rows were written must
// not take them offline.
func (p *Presence) apply(online []string) {
	p.lock()
	defer p.unlock()
	now := p.localUsers(time.Now())
	for _, u := range online {
		now[u] = true
	}
	var changed []string
	for u := range now {
		if !p.view[u] {
			changed = append(changed, u)
		}
	}
	for u := range p.view {
		if !now[u] {
			changed = append(changed, u)
		}
	}
	p.view = now
	slices.Sort(changed)
	for _, u := range changed {
		p.push(u, now[u])
	}
}

// cameOnline puts a user of this instance in the view at once, before
// the Store has their row, so that a subscription that starts now (the
// user's own, say) finds them online. The caller holds the view's lock.
func (p *Presence) cameOnline(u string) {
	if !p.view[u] {
		p.view[u] = true
		p.push(u, true)
	}
}

// push sends a user's frame to their watchers. The caller holds the
// view's lock.
func (p *Presence) push(u string, online bool) {
	frame := presenceFrame(u, online)
	for w := range p.all {
		w.Push(frame)
	}
	for w := range p.one[u] {
		w.Push(frame)
	}
}

// Online returns the users online now, in id order, from the Store (the
// truth; GET /presence). When users is not nil, only those among them, and
// the caller must be allowed to read the presence of each one; otherwise
// the users whose presence the caller may not read are left out, as a
// listing leaves out the records its caller may not read.
func (p *Presence) Online(ctx context.Context, caller api.User, users []string) ([]string, error) {
	for _, u := range users {
		if err := p.access.Allow(ctx, Request{User: caller, Action: ActPresence, Name: u}); err != nil {
			return nil, err
		}
	}
	online, err := p.store.Online(ctx, time.Now(), users)
	if err != nil || users != nil {
		return online, err
	}
	out := online[:0]
	for _, u := range online {
		if p.access.Allow(ctx, Request{User: caller, Action: ActPresence, Name: u}) == nil {
			out = append(out, u)
		}
	}
	return out, nil
}
