-- The change log's size bound (api.TrimOptions.MaxBytes, set by
-- STREAM_RETENTION_BYTES). Each change counts api.Change.Size: the bytes of
-- its name, publisher and data, plus 64 (api.ChangeOverhead).
--
-- The log's size is kept as two running totals, so that Trim never sums
-- the table: log_head.bytes counts what was ever appended (writers update
-- that row anyway, as they take positions) and log_trimmed.bytes what was
-- ever removed (only Trim writes that row, so trimming still never waits
-- for writers). The log holds the difference. log.size is each change's
-- Size, which Trim reads only on the rows it removes.
--
-- Rows written before this migration count 0 bytes: adding the column with
-- a constant default rewrites nothing, and those rows leave with
-- STREAM_RETENTION anyway.

-- +goose Up
ALTER TABLE log ADD COLUMN size integer NOT NULL DEFAULT 0;
ALTER TABLE log_head ADD COLUMN bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE log_trimmed ADD COLUMN bytes bigint NOT NULL DEFAULT 0;

-- Direct SQL writes (0002) count their changes too.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchboard_record_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n       int := 1;
    head    bigint;
    at      timestamptz;
    deleted int := 0; -- the Size of the delete change, if any
    written int := 0; -- the Size of the set change, if any
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name <> OLD.name THEN
        n := 2; -- a rename deletes one record and creates another
    END IF;
    IF TG_OP = 'DELETE' OR n = 2 THEN
        deleted := octet_length(OLD.name) + 64;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        written := octet_length(NEW.name) + octet_length(NEW.data::text) + 64;
    END IF;
    UPDATE log_head SET seq = seq + n, bytes = bytes + deleted + written,
        time = greatest(time, clock_timestamp())
    RETURNING seq, time INTO head, at;
    IF TG_OP = 'DELETE' OR n = 2 THEN
        INSERT INTO log (seq, time, kind, name, version, size)
        VALUES (head - n + 1, at, 'delete', OLD.name, OLD.version + 1, deleted);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO log (seq, time, kind, name, version, data, size)
        VALUES (head, at, 'set', NEW.name, NEW.version, NEW.data, written);
    END IF;
    -- The channel of the Bus topic "changes"; "=" marks a text payload.
    PERFORM pg_notify('switchboard.changes', '=' || head);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchboard_record_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n    int := 1;
    head bigint;
    at   timestamptz;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name <> OLD.name THEN
        n := 2; -- a rename deletes one record and creates another
    END IF;
    UPDATE log_head SET seq = seq + n, time = greatest(time, clock_timestamp())
    RETURNING seq, time INTO head, at;
    IF TG_OP = 'DELETE' OR n = 2 THEN
        INSERT INTO log (seq, time, kind, name, version)
        VALUES (head - n + 1, at, 'delete', OLD.name, OLD.version + 1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO log (seq, time, kind, name, version, data)
        VALUES (head, at, 'set', NEW.name, NEW.version, NEW.data);
    END IF;
    -- The channel of the Bus topic "changes"; "=" marks a text payload.
    PERFORM pg_notify('switchboard.changes', '=' || head);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
ALTER TABLE log_trimmed DROP COLUMN bytes;
ALTER TABLE log_head DROP COLUMN bytes;
ALTER TABLE log DROP COLUMN size;
