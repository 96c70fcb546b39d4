// Package testkit holds what the end-to-end suite (e2e) and the fault
// suite (chaos) share: a client that reads an event stream frame by frame,
// the change log read straight from Postgres, and a Tracker that follows
// one stream across connections and instances and checks what it
// delivered against that log. It is for tests only.
package testkit
