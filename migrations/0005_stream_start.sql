-- A stream's start (api.StreamInfo.Start): the log position below which it
-- never sent a frame, so that a resume point from before it is refused
-- with a reset and fresh snapshots instead of replaying the log. Streams
-- stored before this migration start at 0: unknown, checked as before.

-- +goose Up
ALTER TABLE streams ADD COLUMN start bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE streams DROP COLUMN start;
