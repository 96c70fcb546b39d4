-- Declines of listening (api.Listening.DeclineListen): a listener whose
-- user may not listen to a name is not chosen for it. A decline lives as
-- long as its listener: deleting the listener (removal, expiry) deletes
-- its declines.

-- +goose Up
CREATE TABLE listen_declines (
    listener text NOT NULL REFERENCES listen_listeners (id) ON DELETE CASCADE,
    kind     text NOT NULL,
    name     text COLLATE "C" NOT NULL,
    PRIMARY KEY (listener, name, kind)
);

-- +goose Down
DROP TABLE listen_declines;
