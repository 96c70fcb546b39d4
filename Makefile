# Switchboard: `make run` starts a server on the embedded store, `make test`
# installs what the tests need (PostgreSQL, headless Chromium) and runs them.

GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PGBIN   := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) $(shell command -v initdb 2>/dev/null))
CHROME  := /usr/bin/chromium-headless-shell

.PHONY: run test deps bench fuzz vet scale chaos

# run builds, then execs the server: `go run` would exit 1 on Ctrl-C
# (it reports its child's death by a signal), the server itself exits 0.
run:
	$(GO) build -o bin/switchboard .
	AUTH_MODE=open exec ./bin/switchboard

# The Postgres end-to-end tests run a second time with PEER_URL on every
# instance, as fly.postgres.toml deploys them: writes go through the sequencer.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	E2E_PEERS=1 $(GO) test -race -count=1 -timeout 10m -run PG ./e2e/

# deps installs Debian's PostgreSQL server, headless Chromium, nginx (the drain
# test behind a proxy), Node.js and npm (the openapi.yaml linter, an EventSource client)
# and curl (the README's examples) when missing.
deps:
	@missing=""; \
	[ -n "$(PGBIN)" ] || missing="$$missing postgresql"; \
	[ -x $(CHROME) ] || missing="$$missing chromium-headless-shell"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npx >/dev/null || missing="$$missing npm"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# bench runs the in-process benchmarks; those of whole servers (./e2e/) run
# one by one with the commands in the README's Benchmarks section.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./realtime/ ./realtime/rules/ ./db/...

# scale runs 1, 4 and 8 instances as processes on one durable PostgreSQL and
# prints writes/s, writes per commit, p99 and CPU per write (cmd/pgscale).
scale:
	$(GO) build -o bin/switchboard .
	$(GO) run ./cmd/pgscale -bin bin/switchboard $(SCALEFLAGS)

# fuzz runs each parser fuzzer for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzValidateName -fuzztime $(FUZZTIME) ./api/
	$(GO) test -run '^$$' -fuzz FuzzParsePath -fuzztime $(FUZZTIME) ./api/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./api/
	$(GO) test -run '^$$' -fuzz FuzzWALRead -fuzztime $(FUZZTIME) ./db/embedded/
	$(GO) test -run '^$$' -fuzz FuzzStreamHeader -fuzztime $(FUZZTIME) ./db/embedded/
	$(GO) test -run '^$$' -fuzz FuzzDecodeChanges -fuzztime $(FUZZTIME) ./db/postgres/
	$(GO) test -run '^$$' -fuzz FuzzQuery -fuzztime $(FUZZTIME) ./handlers/
	$(GO) test -run '^$$' -fuzz FuzzPatch -fuzztime $(FUZZTIME) ./realtime/
	$(GO) test -run '^$$' -fuzz FuzzParseToken -fuzztime $(FUZZTIME) ./realtime/
	$(GO) test -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME) ./realtime/rules/
	$(GO) test -run '^$$' -fuzz FuzzLink -fuzztime $(FUZZTIME) ./peer/
	$(GO) test -run '^$$' -fuzz FuzzMatch -fuzztime $(FUZZTIME) ./realtime/rules/

# chaos runs the fault suite (./chaos/) in its long mode, then every fuzzer
# for 60 s: the short mode of the suite is part of `make test`. Inputs
# that make a fuzzer fail are written to its package's testdata/fuzz (commit
# them with the fix); the corpus grown meanwhile stays in Go's cache
# (`go env GOCACHE`/fuzz), which the next run starts from.
# The long mode runs without -race: its load comes from the test process,
# which the race detector would slow below the rates asked (the short mode,
# in `make test`, keeps -race).
chaos: deps
	CHAOS=long $(GO) test -count=1 -timeout 60m -v ./chaos/
	$(MAKE) fuzz FUZZTIME=60s
	$(GO) test -run '^$$' -fuzz FuzzEventFrame -fuzztime 60s -fuzzminimizetime 5s ./chaos/
