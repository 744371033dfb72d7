-- 011: API tokens (cim/tokens.py). A token is shown once when it is made; the store keeps only
-- its SHA-256. role: operator (everything) | designer (uploads, and their own jobs and models).
CREATE SEQUENCE tokens_id_seq START 1;
CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY DEFAULT nextval('tokens_id_seq'),
    name        VARCHAR NOT NULL,
    role        VARCHAR NOT NULL CHECK (role IN ('operator', 'designer')),
    sha256      VARCHAR NOT NULL UNIQUE,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    revoked_at  TIMESTAMP
);
-- who asked for a job through the API (NULL: the command line)
ALTER TABLE jobs ADD COLUMN token_id INTEGER;
