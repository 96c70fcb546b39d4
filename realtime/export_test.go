package realtime

// For the black-box tests: whether a stream has ended, and why.
var (
	StreamEnded = (*Stream).ended
	StreamErr   = (*Stream).err
)
