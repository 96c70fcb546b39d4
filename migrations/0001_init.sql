-- The first schema: records, the change log and its head, stream state.
-- db/postgres (the package comment) explains how the log is ordered.

-- +goose Up

-- records holds the current value of every record. data is json, not
-- jsonb: json keeps the very text it was given (key order, spaces, number
-- spelling), so a record comes back byte for byte as it was written, while
-- the database still checks that it is JSON and SQL can read it
-- (data->>'field'). The C collation makes name order byte order, as List
-- promises.
CREATE TABLE records (
    name    text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0),
    data    json   NOT NULL
);

-- log_head is the single row that hands out log positions. A writing
-- transaction takes its positions with UPDATE ... RETURNING as its last
-- step before commit, so the row lock orders writers and positions are in
-- commit order. time only moves forward, which keeps the log's times in
-- position order (Trim cuts a prefix).
CREATE TABLE log_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint      NOT NULL,
    time timestamptz NOT NULL
);
INSERT INTO log_head (seq, time) VALUES (0, '-infinity');

-- log is the change log: one row per change, positions consecutive.
CREATE TABLE log (
    seq       bigint PRIMARY KEY,
    time      timestamptz NOT NULL,
    kind      text   NOT NULL CHECK (kind IN ('set', 'patch', 'delete', 'event')),
    name      text   NOT NULL,
    version   bigint NOT NULL DEFAULT 0,
    data      json,
    publisher text   NOT NULL DEFAULT ''
);

-- log_trimmed remembers the position of the last change Trim removed:
-- reading from before it says the position is too old. It is a row of its
-- own so that trimming never waits for writers on log_head.
CREATE TABLE log_trimmed (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO log_trimmed (seq) VALUES (0);

-- streams holds what every instance must know to resume or change a stream.
CREATE TABLE streams (
    id      text PRIMARY KEY,
    "user"  text        NOT NULL,
    subs    jsonb       NOT NULL,
    updated timestamptz NOT NULL
);
CREATE INDEX streams_updated ON streams (updated);

-- +goose Down
DROP TABLE streams;
DROP TABLE log_trimmed;
DROP TABLE log;
DROP TABLE log_head;
DROP TABLE records;
