package dbtest_test

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/api"
)

// memRevocations is the reference api.Revocations: a map behind a mutex,
// with positions stepping by 3.
type memRevocations struct {
	revMu   sync.Mutex
	revoked map[string]api.Revocation
	revSeq  int64
}

func (m *memRevocations) Revoke(ctx context.Context, jti string, until time.Time) error {
	if err := api.CheckRevocation(jti, until); err != nil {
		return err
	}
	m.revMu.Lock()
	defer m.revMu.Unlock()
	if m.revoked == nil {
		m.revoked = map[string]api.Revocation{}
	}
	if old, ok := m.revoked[jti]; ok && old.Until.After(until) {
		until = old.Until
	}
	m.revSeq += 3
	m.revoked[jti] = api.Revocation{Seq: m.revSeq, JTI: jti, Until: until}
	return nil
}

func (m *memRevocations) Revocations(ctx context.Context, after int64, limit int) ([]api.Revocation, error) {
	m.revMu.Lock()
	defer m.revMu.Unlock()
	var out []api.Revocation
	for seq := after + 1; seq <= m.revSeq && len(out) < limit; seq++ {
		for _, r := range m.revoked {
			if r.Seq == seq {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (m *memRevocations) TrimRevocations(ctx context.Context, before time.Time) error {
	m.revMu.Lock()
	defer m.revMu.Unlock()
	for jti, r := range m.revoked {
		if r.Until.Before(before) {
			delete(m.revoked, jti)
		}
	}
	return nil
}
