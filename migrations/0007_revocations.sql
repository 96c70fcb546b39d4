-- Revoked tokens: a row per token id (jti) until its token expires
-- (api.Revocations). seq is the row's position among revocations, taken
-- from the single-row counter revocation_head inside the revoking
-- statement: its row lock is held until commit, so positions follow commit
-- order and a reader that asks for "every revocation after X" never misses
-- one that commits later with a lower position. Revoking a jti again moves
-- its row to a new position. Rows whose until has passed are deleted
-- (TrimRevocations); the counter never goes back.

-- +goose Up
CREATE TABLE revocations (
    jti   text        PRIMARY KEY,
    seq   bigint      NOT NULL UNIQUE,
    until timestamptz NOT NULL
);

CREATE INDEX revocations_until ON revocations (until);

CREATE TABLE revocation_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint  NOT NULL
);

INSERT INTO revocation_head (one, seq) VALUES (true, 0);

-- +goose Down
DROP TABLE revocation_head;
DROP TABLE revocations;
