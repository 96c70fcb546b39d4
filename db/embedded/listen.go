package embedded

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// Listening is the embedded store's api.Listening, in memory: its rows
// belong to the instances of this process, which die with it. One lock
// makes every decision one decision. The zero value is ready to use; it
// is safe for concurrent use.
type Listening struct {
	mu        sync.Mutex
	demand    map[api.ListenKey]map[string]demandRow // by name, then instance
	listeners map[string]listenerRow                 // by id
	choices   map[api.ListenKey]api.Choice
}

type demandRow struct {
	api.Demand
	expires time.Time
}

type listenerRow struct {
	api.Listener
	expires  time.Time
	declined map[api.ListenKey]bool // names it may not be told of: they go with it
}

var _ api.Listening = (*Listening)(nil)

// SetDemand stores d until expires and re-makes the choice of its name.
func (s *Listening) SetDemand(_ context.Context, d api.Demand, expires, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	rows := l.demand[d.ListenKey]
	if d.Count <= 0 {
		delete(rows, d.Instance)
		if len(rows) == 0 {
			delete(l.demand, d.ListenKey)
		}
	} else {
		if rows == nil {
			rows = make(map[string]demandRow)
			l.demand[d.ListenKey] = rows
		}
		rows[d.Instance] = demandRow{Demand: d, expires: expires}
	}
	w := wakes{}
	l.decide(d.ListenKey, now, w)
	return w.list(), nil
}

// AddListener stores lr until expires and re-makes the choice of every
// name under its prefix in demand.
func (s *Listening) AddListener(_ context.Context, lr api.Listener, expires, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	r := l.listeners[lr.ID] // a listener stored again keeps its declines
	r.Listener, r.expires = lr, expires
	l.listeners[lr.ID] = r
	w := wakes{}
	for key := range l.demand {
		if api.Covers(lr.Prefix, key.Name) {
			l.decide(key, now, w)
		}
	}
	return w.list(), nil
}

// RemoveListener removes a listener and re-makes the choice of its names.
func (s *Listening) RemoveListener(_ context.Context, id string, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	delete(l.listeners, id)
	w := wakes{}
	for key, c := range l.choices {
		if c.Listener == id {
			l.decide(key, now, w)
		}
	}
	return w.list(), nil
}

// RemoveListenersExcept removes the listeners of instance not in keep and
// re-makes the choice of their names.
func (s *Listening) RemoveListenersExcept(_ context.Context, instance string, keep []string, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	kept := make(map[string]bool, len(keep))
	for _, id := range keep {
		kept[id] = true
	}
	gone := map[string]bool{}
	for id, r := range l.listeners {
		if r.Instance == instance && !kept[id] {
			delete(l.listeners, id)
			gone[id] = true
		}
	}
	w := wakes{}
	for key, c := range l.choices {
		if gone[c.Listener] {
			l.decide(key, now, w)
		}
	}
	return w.list(), nil
}

// RenewListen sets the expiry of every row of instance.
func (s *Listening) RenewListen(_ context.Context, instance string, expires time.Time) error {
	l := s.lock()
	defer l.mu.Unlock()
	for _, rows := range l.demand {
		if r, ok := rows[instance]; ok {
			r.expires = expires
			rows[instance] = r
		}
	}
	for id, r := range l.listeners {
		if r.Instance == instance {
			r.expires = expires
			l.listeners[id] = r
		}
	}
	return nil
}

// ExpireListen deletes the expired rows and re-makes every choice: in
// memory, all of them cost less than finding those that need it.
func (s *Listening) ExpireListen(_ context.Context, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	for key, rows := range l.demand {
		for instance, r := range rows {
			if !r.expires.After(now) {
				delete(rows, instance)
			}
		}
		if len(rows) == 0 {
			delete(l.demand, key)
		}
	}
	for id, r := range l.listeners {
		if !r.expires.After(now) {
			delete(l.listeners, id)
		}
	}
	w := wakes{}
	for key := range l.choices {
		l.decide(key, now, w)
	}
	for key := range l.demand {
		l.decide(key, now, w)
	}
	return w.list(), nil
}

// DeclineListen notes that the listener may not be told of key, and
// re-makes the choice of key without it.
func (s *Listening) DeclineListen(_ context.Context, key api.ListenKey, id string, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	r, ok := l.listeners[id]
	if !ok {
		return nil, nil
	}
	if r.declined == nil {
		r.declined = make(map[api.ListenKey]bool)
		l.listeners[id] = r
	}
	r.declined[key] = true
	w := wakes{}
	l.decide(key, now, w)
	return w.list(), nil
}

// ForgetDeclines drops the declines of instance's listeners and re-makes
// the choice of their names.
func (s *Listening) ForgetDeclines(_ context.Context, instance string, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	keys := map[api.ListenKey]bool{}
	for id, r := range l.listeners {
		if r.Instance != instance || r.declined == nil {
			continue
		}
		for k := range r.declined {
			keys[k] = true
		}
		r.declined = nil
		l.listeners[id] = r
	}
	w := wakes{}
	for k := range keys {
		l.decide(k, now, w)
	}
	return w.list(), nil
}

// Chosen returns the choices of instance's listeners.
func (s *Listening) Chosen(_ context.Context, instance string) ([]api.Choice, error) {
	l := s.lock()
	defer l.mu.Unlock()
	var out []api.Choice
	for _, c := range l.choices {
		if c.Instance == instance {
			out = append(out, c)
		}
	}
	return out, nil
}

// ListenPrefixes returns the prefixes of the live listeners.
func (s *Listening) ListenPrefixes(_ context.Context, now time.Time) ([]string, error) {
	l := s.lock()
	defer l.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, r := range l.listeners {
		if r.expires.After(now) && !seen[r.Prefix] {
			seen[r.Prefix] = true
			out = append(out, r.Prefix)
		}
	}
	return out, nil
}

// lock locks l, making its maps on first use, and returns it.
func (l *Listening) lock() *Listening {
	l.mu.Lock()
	if l.demand == nil {
		l.demand = make(map[api.ListenKey]map[string]demandRow)
		l.listeners = make(map[string]listenerRow)
		l.choices = make(map[api.ListenKey]api.Choice)
	}
	return l
}

// decide re-makes the choice of key, with l locked, and adds the
// instances to wake to w.
func (l *Listening) decide(key api.ListenKey, now time.Time, w wakes) {
	var demand []api.Demand
	for _, r := range l.demand[key] {
		if r.expires.After(now) {
			demand = append(demand, r.Demand)
		}
	}
	var listeners []api.Listener
	if len(demand) > 0 {
		for _, r := range l.listeners {
			if r.expires.After(now) && api.Covers(r.Prefix, key.Name) && !r.declined[key] {
				listeners = append(listeners, r.Listener)
			}
		}
	}
	cur, had := l.choices[key]
	next, ok := api.Choose(key, cur.Listener, demand, listeners)
	if had == ok && cur.Listener == next.ID {
		return
	}
	if had {
		w[cur.Instance] = true
		delete(l.choices, key)
	}
	if ok {
		w[next.Instance] = true
		l.choices[key] = api.Choice{ListenKey: key, Listener: next.ID, Instance: next.Instance}
	}
}

// wakes is a set of instances to wake.
type wakes map[string]bool

func (w wakes) list() []string {
	out := make([]string, 0, len(w))
	for i := range w {
		out = append(out, i)
	}
	return out
}
