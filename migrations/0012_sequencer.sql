-- The sequencer's lease (PEER_URL): the instance that holds it commits the
-- writes of every instance that forwards them, so that their groups merge.
-- One row; an instance takes it when it has run out and renews its own.
-- The lease is a matter of speed only: every commit still orders itself
-- on log_head, so two instances that both believe they hold it are safe.

-- +goose Up
CREATE TABLE sequencer (
    id    int PRIMARY KEY CHECK (id = 1),
    url   text NOT NULL,        -- where the holder takes forwarded writes
    token text NOT NULL,        -- the holder's secret: forwarded writes carry it
    until timestamptz NOT NULL  -- the lease runs out then (the database's clock)
);

-- +goose Down
DROP TABLE sequencer;
