package embedded

// OpenCheckpointEvery opens a store that checkpoints after every n
// changes, so that tests read across the bbolt file and the write-ahead
// log at every turn.
func OpenCheckpointEvery(dir string, n int) (*Store, error) {
	return open(dir, options{every: n, retry: checkpointRetry})
}
