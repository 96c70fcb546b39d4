// Package chaos holds Switchboard's fault suite: tests that start the
// built command as real processes (on 127.0.0.1 only, on the embedded
// store or on a PostgreSQL server that pgtest starts), break something
// under load (a SIGKILL, a database restarted, slow or out of
// connections, a full disk, a damaged data directory, hostile clients)
// and check that every acknowledged write is kept, that streams resume
// with no gap and no duplicate, and that the server answers with clear
// errors and recovers on its own.
//
// `go test ./chaos/` runs the short version of every scenario (part of
// `make test`); CHAOS=long (`make chaos`) runs them longer and larger.
// The package has no code outside its tests.
package chaos
