-- 010: 3D Tiles beside the store (cim/tilefiles.py). Tile files live in `<store file>.tiles/`,
-- one folder per tileset, each file named by its content (sha256), written under a temporary
-- name and renamed before the transaction that lists it here commits. `tilesets` holds each
-- tileset's current generation and its tileset.json document, which is written to the folder
-- after the commit (and rewritten from here at the next open if a crash came between).
-- A tileset keeps the files of its current and its previous generation (a client loading the
-- previous tileset.json still finds its tiles); older ones are deleted after the commit.
CREATE TABLE tilesets (
    name        VARCHAR PRIMARY KEY,       -- buildings | bim | points
    generation  INTEGER NOT NULL,
    document    JSON NOT NULL,             -- tileset.json
    sha256      VARCHAR NOT NULL,          -- of tileset.json as written
    stats       JSON,                      -- tiles, bytes, features, points ... of this generation
    inputs      VARCHAR,                   -- digest of what the tileset was built from (stale check)
    built_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE tiles (
    tileset     VARCHAR NOT NULL,
    generation  INTEGER NOT NULL,
    path        VARCHAR NOT NULL,          -- inside the tileset's folder
    bytes       BIGINT NOT NULL,
    sha256      VARCHAR NOT NULL,
    input_key   VARCHAR,                   -- digest of the tile's inputs: unchanged inputs reuse the file
    PRIMARY KEY (tileset, generation, path)
);
