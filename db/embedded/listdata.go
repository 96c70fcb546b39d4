package embedded

import (
	"context"

	"github.com/switchboard-dev/switchboard/api"
)

// ListData returns a page of the records under prefix after the cursor,
// with their data, in name order, read at one position of the log.
func (s *Store) ListData(_ context.Context, prefix, after string, limit int) (int64, []api.Record, error) {
	var pos int64
	recs, err := s.list(prefix, after, limit, true, &pos)
	return pos, recs, err
}
