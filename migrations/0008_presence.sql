-- Presence: a row per (instance, user) for each signed-in user with a
-- stream open on that instance (or one closed less than LEAVE_GRACE ago),
-- renewed by the instance's heartbeat. A user is online while one of their
-- rows has not expired; the rows of an instance that died without closing
-- its streams stop counting at their expiry. user_id sorts by bytes
-- (COLLATE "C"): GET /presence lists users in id order, whatever the
-- database's collation. The key leads with user_id for ?user= lookups.

-- +goose Up
CREATE TABLE presence (
    user_id  text COLLATE "C" NOT NULL,
    instance text             NOT NULL,
    expires  timestamptz      NOT NULL,
    PRIMARY KEY (user_id, instance)
);

CREATE INDEX presence_instance ON presence (instance);
CREATE INDEX presence_expires ON presence (expires);

-- +goose Down
DROP TABLE presence;
