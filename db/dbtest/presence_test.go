package dbtest_test

import (
	"context"
	"slices"
	"time"
)

// memStore's presence: the rows, as the contract states them.

func (s *memStore) PutPresence(_ context.Context, instance string, users []string, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.presence == nil {
		s.presence = map[string]map[string]time.Time{}
	}
	for _, u := range users {
		if s.presence[instance] == nil {
			s.presence[instance] = map[string]time.Time{}
		}
		s.presence[instance][u] = expires
	}
	return nil
}

func (s *memStore) RemovePresence(_ context.Context, instance string, users []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		delete(s.presence[instance], u)
	}
	return nil
}

func (s *memStore) Online(_ context.Context, now time.Time, users []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for _, rows := range s.presence {
		for u, exp := range rows {
			if exp.After(now) && (users == nil || slices.Contains(users, u)) && !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *memStore) ExpirePresence(_ context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rows := range s.presence {
		for u, exp := range rows {
			if !exp.After(now) {
				delete(rows, u)
			}
		}
	}
	return nil
}
