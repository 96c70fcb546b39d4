// Package e2e holds Switchboard's end-to-end tests: real servers started
// through server.Run on 127.0.0.1:0 (one or two instances, on the embedded
// store or on a PostgreSQL server that pgtest starts for the test binary),
// driven over HTTP and SSE as clients drive them, with their answers
// checked against the repository's openapi.yaml, and one test in a headless
// Chromium. The benchmarks of whole servers live here too. The package has
// no code outside its tests.
package e2e
