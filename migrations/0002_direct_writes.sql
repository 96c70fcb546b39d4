-- Writes to the records table by other programs, with plain SQL (INSERT,
-- UPDATE, DELETE), reach subscribers like the store's own: triggers give
-- the row its next version and append the change to the log, taking the
-- position from log_head exactly as the store does, and NOTIFY.
--
-- The store marks its own transactions (SET LOCAL switchboard.writer =
-- 'store') and logs its writes itself, so the triggers skip them.
--
-- A direct write holds log_head's row lock from the write until its
-- transaction ends, and every writer waits meanwhile: keep such
-- transactions short. TRUNCATE is not announced.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION switchboard_record_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.name <> OLD.name THEN
        NEW.version := 1;
    ELSE
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION switchboard_record_log() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER records_version BEFORE INSERT OR UPDATE ON records FOR EACH ROW
    WHEN (current_setting('switchboard.writer', true) IS DISTINCT FROM 'store')
    EXECUTE FUNCTION switchboard_record_version();

CREATE TRIGGER records_log AFTER INSERT OR UPDATE OR DELETE ON records FOR EACH ROW
    WHEN (current_setting('switchboard.writer', true) IS DISTINCT FROM 'store')
    EXECUTE FUNCTION switchboard_record_log();

-- +goose Down
DROP TRIGGER records_log ON records;
DROP TRIGGER records_version ON records;
DROP FUNCTION switchboard_record_log();
DROP FUNCTION switchboard_record_version();
