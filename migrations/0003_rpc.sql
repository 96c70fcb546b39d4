-- The RPC queue (api.RPCQueue, db/postgres/rpc.go): requests waiting for a
-- provider, held by one, or done and waiting for their requester; the
-- providers registered for each name; and which providers have had each
-- request. Every instance claims from these tables, so requester and
-- provider may sit on different instances.
--
-- Every time here is the caller's (api.RPCQueue takes them as arguments):
-- the queue never reads the database clock, so that instances compare
-- times the way the conformance suite does.

-- +goose Up

-- rpc_requests holds each request from Enqueue until its requester takes
-- the result (Take), cancels (Cancel) or its deadline has passed
-- (Expire). state is
--
--   pending  waiting for a provider: claim, provider, lease and lease_until are null
--   claimed  with one provider, under the claim id claim until lease_until
--   done     result_* is set; the requester is woken to Take it
--
-- seq orders the requests by age: claims hand out the oldest first. data
-- and result_data are json, which keeps the text it was given. lease_until
-- is in no index, so that renewing a lease (the most frequent write: every
-- answer renews every other running claim of its provider) is a HOT
-- update, which leaves the indexes alone; the fillfactor keeps room for
-- it on the page.
CREATE TABLE rpc_requests (
    id             text PRIMARY KEY,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    name           text COLLATE "C" NOT NULL,
    data           json,
    requester      text        NOT NULL DEFAULT '',
    deadline       timestamptz NOT NULL,
    max_attempts   int         NOT NULL CHECK (max_attempts >= 1),
    expired        int         NOT NULL DEFAULT 0, -- claims whose lease ran out
    state          text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done')),
    claim          text UNIQUE,
    provider       text,
    lease          interval,
    lease_until    timestamptz,
    result_data    json,
    result_code    text,
    result_message text,
    CHECK ((state = 'claimed') = (claim IS NOT NULL AND provider IS NOT NULL AND lease_until IS NOT NULL))
) WITH (fillfactor = 70);

-- A claim walks each of its names' pending requests in age order, taking
-- them FOR UPDATE SKIP LOCKED; the index holds pending requests only, so
-- it stays as small as the backlog.
CREATE INDEX rpc_requests_pending ON rpc_requests (name, seq) WHERE state = 'pending';
-- An answer renews the running leases of its provider's other claims, and
-- Expire looks for the leases that ran out among the claimed requests.
CREATE INDEX rpc_requests_claimed ON rpc_requests (provider) WHERE state = 'claimed';
-- Expire deletes requests past their deadline.
CREATE INDEX rpc_requests_deadline ON rpc_requests (deadline);

-- rpc_providers registers provider as a provider of name until until
-- (exclusive). Claims and the grace after a poll extend it, never shorten
-- it; Expire deletes registrations that ended. until is in no index, so
-- that extending a registration (every claim does) is a HOT update; Expire
-- reads the whole table, one row per live provider and name.
CREATE TABLE rpc_providers (
    name     text COLLATE "C" NOT NULL,
    provider text        NOT NULL,
    until    timestamptz NOT NULL,
    PRIMARY KEY (name, provider)
) WITH (fillfactor = 70);

-- rpc_tried lists the providers that have had a request: a claim never
-- hands it to them again, and a reject goes to a registered provider that
-- is not listed here (or, when none is left, ends it with NO_RPC_PROVIDER).
CREATE TABLE rpc_tried (
    request  text NOT NULL REFERENCES rpc_requests (id) ON DELETE CASCADE,
    provider text NOT NULL,
    PRIMARY KEY (request, provider)
);

-- +goose Down
DROP TABLE rpc_tried;
DROP TABLE rpc_providers;
DROP TABLE rpc_requests;
