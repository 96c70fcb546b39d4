-- Versions never repeat: a record deleted and created again continues
-- after its last version (the delete's). record_tombstones keeps that
-- version for every deleted record, for good (a name and a number: it is
-- what the API promises, and no trim may forget it), and a record's row
-- and its tombstone never exist together. The store (db/postgres/write.go)
-- keeps them itself, under a transaction-level advisory lock of each name
-- it writes; the triggers of direct SQL writes (0002) now do the same.

-- +goose Up
CREATE TABLE record_tombstones (
    name    text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchboard_record_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.name <> OLD.name THEN
        -- The advisory lock of the name, as the store takes it
        -- (db/postgres/write.go: recordLockClass = 0x5243).
        PERFORM pg_advisory_xact_lock(21059, hashtext(NEW.name));
        NEW.version := coalesce((SELECT version FROM record_tombstones WHERE name = NEW.name), 0) + 1;
    ELSE
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION switchboard_record_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN
        INSERT INTO record_tombstones (name, version) VALUES (OLD.name, OLD.version + 1)
        ON CONFLICT (name) DO UPDATE SET version = excluded.version;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN
        DELETE FROM record_tombstones WHERE name = NEW.name;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER records_tombstone AFTER INSERT OR UPDATE OR DELETE ON records FOR EACH ROW
    WHEN (current_setting('switchboard.writer', true) IS DISTINCT FROM 'store')
    EXECUTE FUNCTION switchboard_record_tombstone();

-- +goose Down
DROP TRIGGER records_tombstone ON records;
DROP FUNCTION switchboard_record_tombstone();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchboard_record_version() RETURNS trigger LANGUAGE plpgsql AS $$
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
DROP TABLE record_tombstones;
