-- Listening (api.Listening): the demand of every instance's streams for
-- record and event names, the listen subscriptions of every instance's
-- streams, and per name the one listener told of it. Rows of an instance
-- expire unless the instance renews them, so that a killed instance is
-- forgotten. A choice is re-made by one transaction at a time per name,
-- under a transaction-level advisory lock of the name (db/postgres/listen.go).
-- Names and prefixes sort bytewise (COLLATE "C"), so that the names under
-- a prefix are one range of the primary key.

-- +goose Up
CREATE TABLE listen_demand (
    kind     text NOT NULL,
    name     text COLLATE "C" NOT NULL,
    instance text NOT NULL,
    count    smallint NOT NULL,
    stream   text NOT NULL DEFAULT '',
    expires  timestamptz NOT NULL,
    PRIMARY KEY (name, kind, instance)
);
CREATE INDEX listen_demand_instance ON listen_demand (instance);
CREATE INDEX listen_demand_expires ON listen_demand (expires);

CREATE TABLE listen_listeners (
    id       text PRIMARY KEY,
    instance text NOT NULL,
    stream   text NOT NULL,
    prefix   text COLLATE "C" NOT NULL,
    expires  timestamptz NOT NULL
);
CREATE INDEX listen_listeners_instance ON listen_listeners (instance);

CREATE TABLE listen_choices (
    kind     text NOT NULL,
    name     text COLLATE "C" NOT NULL,
    listener text NOT NULL,
    instance text NOT NULL,
    PRIMARY KEY (name, kind)
);
CREATE INDEX listen_choices_listener ON listen_choices (listener);
CREATE INDEX listen_choices_instance ON listen_choices (instance);

-- +goose Down
DROP TABLE listen_choices;
DROP TABLE listen_listeners;
DROP TABLE listen_demand;
