package embedded

import (
	"context"
	"slices"
	"sync"
	"time"
)

// presence is the embedded api.PresenceStore, in memory: presence is the
// streams this very process holds, and dies with it. The zero value is
// ready; one mutex guards the rows.
type presence struct {
	mu   sync.Mutex
	rows map[string]map[string]time.Time // instance -> user -> expiry
}

// PutPresence creates or renews the rows of instance for users.
func (s *Store) PutPresence(_ context.Context, instance string, users []string, expires time.Time) error {
	if len(users) == 0 {
		return nil
	}
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rows == nil {
		p.rows = make(map[string]map[string]time.Time)
	}
	rows := p.rows[instance]
	if rows == nil {
		rows = make(map[string]time.Time, len(users))
		p.rows[instance] = rows
	}
	for _, u := range users {
		rows[u] = expires
	}
	return nil
}

// RemovePresence removes the rows of instance for users.
func (s *Store) RemovePresence(_ context.Context, instance string, users []string) error {
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	rows := p.rows[instance]
	for _, u := range users {
		delete(rows, u)
	}
	if len(rows) == 0 {
		delete(p.rows, instance)
	}
	return nil
}

// Online returns the users with a row expiring after now, in id order.
func (s *Store) Online(_ context.Context, now time.Time, users []string) ([]string, error) {
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]bool)
	for _, rows := range p.rows {
		if users != nil {
			for _, u := range users {
				if exp, ok := rows[u]; ok && exp.After(now) {
					seen[u] = true
				}
			}
			continue
		}
		for u, exp := range rows {
			if exp.After(now) {
				seen[u] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	slices.Sort(out)
	return out, nil
}

// ExpirePresence removes the rows that expire at or before now.
func (s *Store) ExpirePresence(_ context.Context, now time.Time) error {
	p := &s.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	for instance, rows := range p.rows {
		for u, exp := range rows {
			if !exp.After(now) {
				delete(rows, u)
			}
		}
		if len(rows) == 0 {
			delete(p.rows, instance)
		}
	}
	return nil
}
