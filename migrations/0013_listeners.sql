-- log_head.listeners counts the times an instance began to listen for
-- notifications (connected its listener, and LISTENs): each bumps it, in
-- a statement that takes log_head's row lock as a write group does. A
-- group's statement returns it, so an instance knows, for each of its
-- groups, whether every instance that listened before it had been seen
-- to take its announcements over a peer link (db/postgres's relay.go):
-- only then may the group go without a NOTIFY.

-- +goose Up
ALTER TABLE log_head ADD COLUMN listeners bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE log_head DROP COLUMN listeners;
